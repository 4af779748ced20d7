"""OS images: the Debian reference image builder (mmdebstrap), QEMU devices for it, and the upstream watcher."""

from .errors import BuildError, OsBuildError, PublishError, ToolMissing
from .reference import BuildResult, BuildSpec, build_image

__all__ = ["BuildError", "BuildResult", "BuildSpec", "OsBuildError", "PublishError", "ToolMissing", "build_image"]
