"""Reference-image fixtures: skip with the missing package's name; the builds need root and the Debian mirror."""

from __future__ import annotations

import os

import pytest

from bulkhead.osbuild.reference import missing_packages


def need_image_tools() -> None:
    missing = missing_packages()
    if missing:
        pytest.skip(f"the image build needs the Debian package(s) {', '.join(missing)} ('make setup' installs them)")
    if os.geteuid() != 0:
        pytest.skip("the image build needs root (mmdebstrap --mode=root)")
