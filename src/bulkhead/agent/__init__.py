"""bulkhead.agent: the device agent (enroll, converge to the desired state, drive RAUC and Podman, report).

It uses only the Python standard library, so it installs on a device next to RAUC and Podman.
"""

__all__: list[str] = []
