"""msvit.web: the browser app (``msvit-export --target web``) and ``msvit-web serve``."""
from .build import WEB_PRECISIONS, WebConfig, build_web, web_folder_name
from .serve import make_server, serve_in_thread

__all__ = ["WEB_PRECISIONS", "WebConfig", "build_web", "make_server", "serve_in_thread", "web_folder_name"]
