"""msvit.kit: conformance kits, golden cases of msvit's whole pipeline that an app (Android,
iOS, the web, a service) tests its own pipeline against, stage by stage (docs/kit.md).

:func:`write_kit` records msvit-predict's pipeline on images and videos; :func:`run_kit` runs a
kit with another artifact or runtime; :func:`check` compares a run with a kit and names the
first stage that departs.
"""
from .check import STAGES, CheckReport, StageFailure, StageTally, check
from .cli import add_kit_argument, check_kit_argument, kit_dir_for, write_export_kits
from .run import Stages, run_kit
from .schema import SCHEMA, Kit, KitError, load, rgb_sha256, tensor_of, tensor_sha256, verify_files
from .write import write_kit

__all__ = ["SCHEMA", "STAGES", "CheckReport", "Kit", "KitError", "StageFailure", "StageTally", "Stages",
           "add_kit_argument", "check", "check_kit_argument", "kit_dir_for", "load", "rgb_sha256",
           "run_kit", "tensor_of", "tensor_sha256", "verify_files", "write_export_kits", "write_kit"]
