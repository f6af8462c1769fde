"""msvit.explain: where in the face each branch sees the fake.

>>> from msvit.explain import TorchExplainer, plan_maps
>>> maps, ms = TorchExplainer(model).maps(x, plan_maps(None, "both", gradients=True))
>>> maps["low_hirescam"].shape      # (N, 224, 224) in [0, 1]

``msvit-explain`` (and ``msvit-predict --explain DIR``) is its CLI.
"""
from .methods import (ARTIFACT_METHODS, BRANCHES, DEEPGUARD_METHODS, METHODS, TOKEN_OUTPUTS, ArtifactExplainer,
                      MapSpec, Method, TorchExplainer, eigencam_from_tokens, map_drift, plan_maps, scale_as_grad_cam,
                      tokens_to_map)
from .render import contact_sheet, map_to_crop, overlay

__all__ = [
    "ARTIFACT_METHODS", "BRANCHES", "DEEPGUARD_METHODS", "METHODS", "TOKEN_OUTPUTS", "ArtifactExplainer", "MapSpec",
    "Method", "TorchExplainer", "contact_sheet", "eigencam_from_tokens", "map_drift", "map_to_crop", "overlay",
    "plan_maps", "scale_as_grad_cam", "tokens_to_map",
]
