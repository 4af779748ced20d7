"""meta-bulkhead and the kas files: linted by oelint-adv, validated by kas itself, in step with the reference image."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bulkhead.osbuild import layout
from bulkhead.osbuild.errors import OsBuildError
from bulkhead.osbuild.kasconfig import load_kas, repos_of

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "meta-bulkhead"
MACHINES = sorted((ROOT / "kas" / "machines").glob("*.yml"))
OELINT = [str(Path(sys.executable).with_name("oelint-adv"))]
OELINT_ARGS = ["--extra-layer", "rauc", "virtualization-layer", "--constantmods", "+meta-bulkhead/.oelint-constants.json", "--"]

# The machine layers of meta-rauc-community's scarthgap branch, and the machine each kas file builds.
SCARTHGAP_LAYERS = {
    "meta-rauc-qemux86": {"qemux86-64"},
    "meta-rauc-raspberrypi": {"raspberrypi4-64", "raspberrypi5"},
    "meta-rauc-beaglebone": {"beaglebone-yocto"},
    "meta-rauc-qemuarm": {"qemuarm"},
    "meta-rauc-rockchip": {"rock-pi-4b"},
    "meta-rauc-sunxi": {"olinuxino-a10lime"},
    "meta-rauc-nxp": {"cubox-i"},
    "meta-rauc-tegra": {"jetson-tx2-devkit"},
}


def recipes(layer: Path) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in layer.rglob("*") if p.suffix in (".bb", ".bbappend"))


def oelint(files: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OELINT, *OELINT_ARGS, *files], cwd=cwd, capture_output=True, text=True, check=False)


def test_oelint_adv_finds_nothing_in_meta_bulkhead() -> None:
    files = recipes(LAYER)
    assert len(files) == 5, files  # agent, preinit, image, bundle, container-host-config append
    res = oelint(files)
    assert res.returncode == 0 and res.stdout + res.stderr == "", res.stdout + res.stderr


def test_oelint_adv_reports_a_recipe_that_breaks_the_style_guide(tmp_path: Path) -> None:
    """The same check fails on a broken copy of the agent recipe (no LICENSE, a tab, a misspelt variable)."""
    layer = tmp_path / "meta-bulkhead"
    shutil.copytree(LAYER, layer)
    shutil.copy(ROOT / ".oelint.cfg", tmp_path)
    recipe = layer / "recipes-bulkhead/bulkhead-agent/bulkhead-agent_0.1.0.bb"
    text = recipe.read_text().replace('LICENSE = "Apache-2.0"\n', "").replace("    rm -rf", "\trm -rf")
    recipe.write_text(text + '\nRDEPEND:${PN} += "bash"\n')
    res = oelint([str(recipe.relative_to(tmp_path))], cwd=tmp_path)
    found = res.stdout + res.stderr
    assert res.returncode != 0
    for rule in ("oelint.var.mandatoryvar.LICENSE", "oelint.tabs.notabs", "oelint.vars.mispell"):
        assert rule in found, found


def test_layer_is_for_scarthgap_and_needs_rauc_and_podman_layers() -> None:
    conf = (LAYER / "conf/layer.conf").read_text()
    assert re.search(r'^LAYERSERIES_COMPAT_bulkhead = "scarthgap"$', conf, re.M)
    deps = re.search(r'^LAYERDEPENDS_bulkhead = "(.*)"$', conf, re.M)
    assert deps and {"core", "rauc", "virtualization-layer"} <= set(deps.group(1).split())
    distro = (LAYER / "conf/distro/bulkhead.conf").read_text()
    assert 'INIT_MANAGER = "systemd"' in distro
    # the package overlay: .deb packages, and apt with dpkg's database on the device
    assert re.search(r'^PACKAGE_CLASSES = "package_deb"$', distro, re.M)
    image = (LAYER / "recipes-core/images/bulkhead-image.bb").read_text()
    assert re.search(r'^IMAGE_FEATURES \+= ".*\bpackage-management\b', image, re.M)
    assert re.search(r'^DISTRO_FEATURES:append = ".*\brauc\b.*\bvirtualization\b', distro, re.M)
    # hard assignments: meta-rauc-community's example keys (set with ?=) can never sign a release
    assert re.search(r'^RAUC_KEY_FILE = "\$\{BULKHEAD_RAUC_KEY_FILE\}"$', distro, re.M)
    bundle = (LAYER / "recipes-core/bundles/bulkhead-bundle_1.0.bb").read_text()
    assert 'RAUC_SLOT_rootfs[adaptive] = "block-hash-index"' in bundle and 'RAUC_BUNDLE_FORMAT = "verity"' in bundle


def test_layer_files_are_the_reference_image_files() -> None:
    """The agent's unit, its name script, the containers' unit and script and the container storage are the
    ones the QEMU test proves."""
    files = LAYER / "recipes-bulkhead/bulkhead-agent/files"
    assert (files / "bulkhead-agent.service").read_text() == layout.agent_unit()
    assert (files / "agent-config").read_text() == layout.AGENT_CONFIG_SCRIPT
    assert (files / "bulkhead-containers.service").read_text() == layout.containers_unit()
    assert (files / "containers").read_text() == layout.CONTAINERS_SCRIPT
    recipe = (LAYER / "recipes-bulkhead/bulkhead-agent/bulkhead-agent_0.1.0.bb").read_text()
    assert re.search(r'^SYSTEMD_SERVICE:\$\{PN\} = ".*\bbulkhead-containers\.service\b', recipe, re.M)
    assert "${D}${libdir}/bulkhead/containers" in recipe
    storage = LAYER / "recipes-containers/container-host-config/files/storage.conf"
    assert storage.read_text() == layout.STORAGE_CONF
    template = (files / "agent.toml.in").read_text()
    assert {"@SERVER@", "@NAME@", "@BOOTSTRAP_TOKEN@"} <= set(re.findall(r"@[A-Z_]+@", template))


def test_the_yocto_root_is_read_only_with_the_reference_images_overlays() -> None:
    """The slot is mounted read-only (Yocto's read-only-rootfs) and the reference image's preinit (the script
    tests/osbuild/test_layout.py runs against real partitions) is /sbin/init, which starts systemd; it finds the data
    partition in the machine layer's fstab. Logs persist (/var is on the data partition), and so do ssh's host keys."""
    image = (LAYER / "recipes-core/images/bulkhead-image.bb").read_text()
    assert re.search(r'^IMAGE_FEATURES \+= ".*\bread-only-rootfs\b', image, re.M)
    assert re.search(r"^\s+bulkhead-preinit \\$", image, re.M)
    assert re.search(r'^ROOTFS_POSTPROCESS_COMMAND \+= "bulkhead_read_only_root;"$', image, re.M)
    assert "ln -sf ${libdir}/bulkhead/preinit ${IMAGE_ROOTFS}${base_sbindir}/init" in image
    assert 'echo "SYSCONFDIR=${sysconfdir}/ssh" >> ${IMAGE_ROOTFS}${sysconfdir}/default/ssh' in image
    assert 'echo "SSHD_OPTS=" >> ${IMAGE_ROOTFS}${sysconfdir}/default/ssh' in image
    distro = (LAYER / "conf/distro/bulkhead.conf").read_text()
    assert re.search(r'^VOLATILE_LOG_DIR = "no"$', distro, re.M)
    recipe_dir = LAYER / "recipes-bulkhead/bulkhead-preinit"
    assert (recipe_dir / "files/preinit").read_text() == layout.YOCTO_PREINIT
    assert 'exec "$root/lib/systemd/systemd" "$@"' in layout.YOCTO_PREINIT
    (recipe,) = recipe_dir.glob("bulkhead-preinit_*.bb")
    text = recipe.read_text()
    assert "install -m 0755 ${WORKDIR}/preinit ${D}${libdir}/bulkhead/preinit" in text
    assert re.search(r'^RDEPENDS:\$\{PN\} = ".*\be2fsprogs-e2fsck\b', text, re.M)


@pytest.mark.parametrize("kas_file", MACHINES, ids=[p.stem for p in MACHINES])
def test_kas_file_is_valid_for_kas(kas_file: Path) -> None:
    """kas itself loads the file and its include and checks each against its JSON schema."""
    config = load_kas(kas_file)
    assert config["machine"] == kas_file.stem and config["distro"] == "bulkhead"
    assert config["target"] == ["bulkhead-image", "bulkhead-bundle"]
    assert config["repos"]["bulkhead"]["layers"] == {"meta-bulkhead": None}
    layers = list(config["repos"]["meta-rauc-community"]["layers"])
    assert len(layers) == 1 and kas_file.stem in SCARTHGAP_LAYERS[layers[0]]
    for repo in repos_of(config):
        assert repo.url.startswith("https://") and (repo.branch == "scarthgap" or repo.branch.startswith("scarthgap-")), repo


def test_kas_files_cover_every_meta_rauc_community_scarthgap_layer() -> None:
    built = {p.stem for p in MACHINES}
    assert {"qemux86-64", "raspberrypi4-64", "raspberrypi5"} <= built
    assert built == set().union(*SCARTHGAP_LAYERS.values())


def test_kas_rejects_a_file_outside_its_schema(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    doc = yaml.safe_load((ROOT / "kas/machines/qemux86-64.yml").read_text())
    doc["header"]["includes"] = []
    doc["machine"] = ["qemux86-64"]  # must be a string
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(OsBuildError, match="not valid"):
        load_kas(bad)
