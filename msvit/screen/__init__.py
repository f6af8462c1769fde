"""msvit.screen: msvit-predict's pipeline over a whole corpus, on Ray Data actors or in-process,
one record per input, resumable (``msvit-screen`` is its CLI)."""
from .engines import ENGINES, ScreenConfig, ScreenWorker
from .job import ScreenSummary, screen
from .store import InputKey, ResultStore, artifact_sha256, read_results

__all__ = ["ENGINES", "InputKey", "ResultStore", "ScreenConfig", "ScreenSummary", "ScreenWorker", "artifact_sha256",
           "read_results", "screen"]
