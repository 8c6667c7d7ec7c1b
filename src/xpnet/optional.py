"""The one place optional libraries are imported for export, interop and the playground: a missing one says how to
install it."""
import importlib

from .errors import BackendUnavailableError

EXTRAS = {"torch": "torch", "onnx": "onnx", "safetensors": "safetensors", "starlette": "playground",
          "uvicorn": "playground"}


def require(module):
    """``module`` imported, or BackendUnavailableError with the pip command that installs it."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BackendUnavailableError(f"this needs {top}, which is not installed. To fix: "
                                      f"pip install -e '.[{EXTRAS.get(top, top)}]' (from a clone of xpnet)") from None
