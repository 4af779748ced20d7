"""The reference image's layout, pure: partitions, GRUB's A/B script, RAUC's system.conf, fstab, agent config.

Disk (GPT): 1 EFI system partition (GRUB, its config and grubenv), 2 rootfs A, 3 rootfs B, 4 data (the
agent's state and container storage; never touched by an update). GRUB picks the first slot of ORDER
whose OK is 1 and whose TRY is 0, sets its TRY to 1 and boots it with `rauc.slot=X`; the agent marks
the slot good after its health checks pass (RAUC's grub backend sets OK=1, TRY=0). A slot that does
not get that far is skipped at the next boot: the bootloader rolls back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

__all__ = [
    "CONTAINERS_SCRIPT",
    "SLOTS",
    "STORAGE_CONF",
    "YOCTO_PREINIT",
    "Layout",
    "agent_config",
    "agent_unit",
    "containers_unit",
    "factory_reset_script",
    "factory_reset_unit",
    "fstab",
    "grub_cfg",
    "network_unit",
    "os_release",
    "partition_script",
    "preinit_script",
    "stable_uuid",
    "system_conf",
]

MIB = 1 << 20
SLOTS = ("A", "B")
_NS = uuid.UUID("6b1d3f52-8c1e-4a55-9d0e-8f1b6f0a2c11")  # namespace for the image's fixed UUIDs


def stable_uuid(*parts: str) -> str:
    """A UUID that depends only on its inputs (filesystem UUIDs, hash seeds, partition GUIDs)."""
    return str(uuid.uuid5(_NS, "/".join(parts)))


@dataclass(frozen=True)
class Layout:
    """Partition sizes in MiB and the device the guest sees the disk as."""

    esp_mib: int = 64
    slot_mib: int = 2048
    data_mib: int = 1024
    disk: str = "/dev/vda"

    def part(self, n: int) -> str:
        return f"{self.disk}{n}"

    @property
    def offsets_mib(self) -> list[tuple[int, int]]:
        """(start, size) of partitions 1-4; the first starts at 1 MiB (GPT and alignment)."""
        sizes = [self.esp_mib, self.slot_mib, self.slot_mib, self.data_mib]
        out, start = [], 1
        for size in sizes:
            out.append((start, size))
            start += size
        return out

    @property
    def disk_mib(self) -> int:
        start, size = self.offsets_mib[-1]
        return start + size + 1  # room for the backup GPT


def partition_script(layout: Layout, seed: str) -> str:
    """An sfdisk script for the GPT with fixed GUIDs (the disk image is reproducible too)."""
    esp_type, linux_type = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    names = ["efi", "rootfs-a", "rootfs-b", "data"]
    lines = ["label: gpt", f"label-id: {stable_uuid(seed, 'disk').upper()}", "unit: sectors", ""]
    for i, ((start, size), name) in enumerate(zip(layout.offsets_mib, names, strict=True)):
        kind = esp_type if i == 0 else linux_type
        lines.append(
            f"start={start * 2048}, size={size * 2048}, type={kind}, uuid={stable_uuid(seed, name).upper()}, name={name}"
        )
    return "\n".join(lines) + "\n"


def grub_cfg(layout: Layout, cmdline: str = "console=ttyS0,115200 panic=5") -> str:
    """GRUB's A/B selection with one boot attempt per slot (RAUC's grub backend writes the same variables). The slot
    is mounted read-only and its first process is the preinit script (below), which then starts systemd."""
    entries = []
    for i, slot in enumerate(SLOTS):
        entries.append(
            f'menuentry "Slot {slot}" --id slot{slot} {{\n'
            f"    linux (hd0,gpt{i + 2})/vmlinuz root={layout.part(i + 2)} ro rootwait init={PREINIT} {cmdline} "
            f"rauc.slot={slot}\n"
            f"    initrd (hd0,gpt{i + 2})/initrd.img\n"
            "}\n"
        )
    return (
        "serial --unit=0 --speed=115200\n"
        "terminal_input serial console\n"
        "terminal_output serial console\n"
        "set timeout=1\n"
        'set ORDER="A B"\n'
        "set A_OK=0\nset B_OK=0\nset A_TRY=0\nset B_TRY=0\n"
        "load_env --file $prefix/grubenv\n"
        'set chosen=""\n'
        "for SLOT in $ORDER; do\n"
        '    if [ "$SLOT" = "A" ]; then OK=$A_OK; TRY=$A_TRY; fi\n'
        '    if [ "$SLOT" = "B" ]; then OK=$B_OK; TRY=$B_TRY; fi\n'
        '    if [ "$OK" = "1" -a "$TRY" = "0" ]; then\n'
        "        chosen=$SLOT\n"
        "        break\n"
        "    fi\n"
        "done\n"
        'if [ -z "$chosen" ]; then\n'
        '    echo "No slot is marked bootable: trying the first of ORDER again"\n'
        "    A_TRY=0\n    B_TRY=0\n"
        "    for SLOT in $ORDER; do chosen=$SLOT; break; done\n"
        "fi\n"
        'if [ "$chosen" = "A" ]; then A_TRY=1; default=slotA; fi\n'
        'if [ "$chosen" = "B" ]; then B_TRY=1; default=slotB; fi\n'
        "save_env --file $prefix/grubenv A_TRY B_TRY\n"
        'echo "Booting slot $chosen (ORDER=$ORDER A_OK=$A_OK A_TRY=$A_TRY B_OK=$B_OK B_TRY=$B_TRY)"\n' + "".join(entries)
    )


GRUBENV_INITIAL = {"ORDER": "A B", "A_OK": "1", "A_TRY": "0", "B_OK": "0", "B_TRY": "0"}


def system_conf(layout: Layout, compatible: str, keyring: str = "/etc/rauc/keyring.pem") -> str:
    """RAUC's system.conf: the grub backend on the ESP's grubenv, two ext4 rootfs slots, the data directory.

    `data-directory` is where RAUC keeps what it knows of the slots between installs, among it their block hash
    indexes for adaptive updates (RAUC 1.8+); the central status file stays where devices already have it."""
    slots = "".join(
        f"[slot.rootfs.{i}]\ndevice={layout.part(i + 2)}\ntype=ext4\nbootname={slot}\n\n" for i, slot in enumerate(SLOTS)
    )
    return (
        "[system]\n"
        f"compatible={compatible}\n"
        "bootloader=grub\n"
        "grubenv=/boot/efi/EFI/BOOT/grubenv\n"
        "statusfile=/data/rauc.status\n"
        "data-directory=/data/rauc\n"
        "max-bundle-download-size=4294967296\n\n"
        f"[keyring]\npath={keyring}\n\n" + slots
    ).rstrip("\n") + "\n"


def fstab(layout: Layout) -> str:
    return f"{layout.part(1)}\t/boot/efi\tvfat\tumask=0077,nofail\t0\t2\n{layout.part(4)}\t/data\text4\tdefaults,nofail\t0\t2\n"


def agent_config(server: str, bootstrap_token: str, compatible: str, insecure_registries: tuple[str, ...] = ()) -> str:
    """The agent's TOML template: it enrolls at the first boot; its state lives on /data. `@NAME@` is
    replaced at each start by the device's name (agent-config script). `insecure_registries`: registries
    the device pulls from over plain HTTP (a lab's)."""

    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (
        f"server = {q(server)}\n"
        'name = "@NAME@"\n'
        f"bootstrap_token = {q(bootstrap_token)}\n"
        f"compatible = {q(compatible)}\n"
        'data_dir = "/data/bulkhead"\n'
        'os_release = "/etc/bulkhead/os-release"\n'
        'update_lock = "/run/bulkhead/update.lock"\n'
        f"factory_reset_marker = {q(FACTORY_RESET_MARKER)}\n"
        "\n[health]\ndeadline = 600\n"
        "\n[podman]\n"
        'run_args = ["--runtime", "runc"]\n'
        + (f"insecure_registries = [{', '.join(q(r) for r in insecure_registries)}]\n" if insecure_registries else "")
    )


def agent_unit() -> str:
    return (
        "[Unit]\n"
        "Description=Bulkhead agent: desired state, RAUC updates, containers\n"
        "Wants=network-online.target bulkhead-containers.service\n"
        "After=network-online.target rauc.service data.mount bulkhead-containers.service\n"
        "RequiresMountsFor=/data\n\n"
        "[Service]\n"
        "ExecStartPre=/usr/lib/bulkhead/agent-config\n"
        "ExecStart=/usr/bin/python3 -m bulkhead.agent.main --config /run/bulkhead/agent.toml run\n"
        "Restart=always\n"
        "RestartSec=5\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


AGENT_CONFIG_SCRIPT = """#!/bin/sh
# The device's name: its SMBIOS serial (QEMU: -smbios type=1,serial=NAME), else a random one, kept on /data.
set -e
mkdir -p /data/bulkhead /run/bulkhead
if [ ! -s /data/bulkhead/device-name ]; then
    serial=$(tr -cd 'A-Za-z0-9_.:-' < /sys/class/dmi/id/product_serial 2>/dev/null || true)
    case "$serial" in
        ""|0|None|NotSpecified|TobefilledbyO.E.M.|Default*) serial="bulkhead-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \\n')" ;;
    esac
    echo "$serial" > /data/bulkhead/device-name
fi
sed "s/@NAME@/$(cat /data/bulkhead/device-name)/" /etc/bulkhead/agent.toml.in > /run/bulkhead/agent.toml
"""

# Kernel modules the device loads at boot. RAUC mounts a verity bundle through device-mapper's verity target,
# which Debian's kernel builds as modules nothing loads on demand soon enough: the first install after a boot
# failed with "Failed to load dm table: Argument list too long" (a streamed install, which the agent then
# downloaded and installed once the module had arrived). nbd: how RAUC (1.10+) mounts a bundle it streams.
MODULES_LOAD = "dm-mod\ndm-verity\nnbd\n"

# Podman's storage on the data partition: images, containers and volumes survive an OS update and a rollback.
# skip_mount_home: without it the overlay driver bind-mounts its directory over itself, a mount nothing
# unmounts before /data at shutdown ("Failed unmounting /data/containers/storage/overlay"): /data was then left
# uncleanly, and after one such shutdown Podman refused its storage ("unable to create kernel-style whiteout").
STORAGE_CONF = """[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/data/containers/storage"

[storage.options.overlay]
skip_mount_home = "true"
"""


def containers_unit() -> str:
    """Containers across boots: storage checked before anything uses it, restart=always containers started
    (before the agent, which may be what an update broke), every container stopped before /data is unmounted
    (systemd stops this unit before the mount it requires)."""
    return (
        "[Unit]\n"
        "Description=Bulkhead: Podman's storage checked, containers started at boot and stopped before /data is unmounted\n"
        "Wants=network-online.target\n"
        "After=network-online.target data.mount\n"
        "RequiresMountsFor=/data\n"
        "Before=bulkhead-agent.service\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        "ExecStart=/usr/lib/bulkhead/containers start\n"
        "ExecStop=/usr/lib/bulkhead/containers stop\n"
        "TimeoutStartSec=900\n"
        "TimeoutStopSec=120\n"
        "StandardOutput=journal+console\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


CONTAINERS_SCRIPT = """#!/bin/sh
# Podman's storage on the data partition across boots (bulkhead-containers.service).
# start: check the storage and repair what Podman can repair without losing data (damaged images and unused
#   layers go; the agent pulls what its apps need again); containers and volumes are never removed. A marker
#   left by a boot that did not stop its containers (a power cut, a crash) makes the check read every layer.
#   Then the containers with restart=always are started, before the agent (which an update may have broken).
# stop: stop every container and drop the marker: the data partition unmounts with nothing of Podman's open.
set -u
data="${BULKHEAD_DATA:-/data}"
marker="$data/containers/.in-use"
check() {
    if ! podman system check --help >/dev/null 2>&1; then
        echo "podman $(podman --version 2>/dev/null | sed 's/.* //') has no storage check (Podman 5 has): not checked"
    elif ! podman system check "$@" --repair; then
        echo "podman system check: damage left unrepaired (containers and volumes are kept)" >&2
    fi
}
case "${1:-}" in
start)
    mkdir -p "$data/containers/storage"
    if [ -e "$marker" ]; then
        echo "the last boot did not stop its containers: checking every layer of Podman's storage"
        check
    else
        check --quick
    fi
    touch "$marker"
    sync
    podman start --all --filter restart-policy=always >/dev/null || echo "podman could not start every container" >&2
    ;;
stop)
    podman stop --all --time 10 >/dev/null || echo "podman could not stop every container" >&2
    rm -f "$marker"
    sync
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
exit 0
"""


# Where the agent leaves its credential when the server asks for a factory reset: the EFI partition, which the
# erasure of the data partition does not reach.
FACTORY_RESET_MARKER = "/boot/efi/bulkhead/factory-reset"


def factory_reset_unit(layout: Layout) -> str:
    """Erase the data partition before it is checked or mounted, when the agent left the marker (a factory reset
    the server asked for)."""
    part = layout.part(4)
    dev = part.removeprefix("/dev/").replace("/", "-")
    return (
        "[Unit]\n"
        "Description=Bulkhead factory reset: erase the data partition the server asked to reset\n"
        "DefaultDependencies=no\n"
        f"ConditionPathExists={FACTORY_RESET_MARKER}\n"
        "RequiresMountsFor=/boot/efi\n"
        f"Requires=dev-{dev}.device\n"
        f"After=dev-{dev}.device\n"
        f"Before=systemd-fsck@dev-{dev}.service data.mount local-fs.target shutdown.target\n"
        "Conflicts=shutdown.target\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        "ExecStart=/usr/lib/bulkhead/factory-reset\n"
        "StandardOutput=journal+console\n\n"
        "[Install]\n"
        "WantedBy=local-fs.target\n"
    )


def factory_reset_script(layout: Layout, marker: str = FACTORY_RESET_MARKER) -> str:
    """Erase the data partition (a secure discard where the storage has one, else zeros over all of it: the CRA's
    secure erasure of user data), make its file system again, put the agent's credential on it (it proves the device
    when it enrolls again), drop the marker. A power cut before the end erases again at the next boot."""
    return f"""#!/bin/sh
set -eu
marker={marker}
part={layout.part(4)}
[ -s "$marker" ] || exit 0
echo "factory reset: erasing the data partition $part"
blkdiscard --secure "$part" 2>/dev/null || blkdiscard --zeroout "$part"
mkfs.ext4 -q -F -L data "$part"
mnt=$(mktemp -d -p /run)  # the root is read-only, and /tmp may not be mounted yet
mount "$part" "$mnt"
install -d -m 0700 "$mnt/bulkhead"
install -m 0600 "$marker" "$mnt/bulkhead/previous-credential"
umount "$mnt"
rmdir "$mnt"
rm -f "$marker"
sync
echo "factory reset: the data partition is empty; the agent enrolls again"
"""


# The slot's first process (GRUB's `init=`): the writable parts of a read-only root, then systemd.
PREINIT = "/usr/lib/bulkhead/preinit"
OVERLAY_DIR = "overlay"  # on the data partition: upper and work directories of /etc and /var


def preinit_script(marker: str = FACTORY_RESET_MARKER, root: str = "", init: str = "/sbin/init") -> str:
    """The read-only root's writable parts, set up as PID 1 before systemd starts (as balenaOS and Yocto's
    overlayfs-etc do): the data partition checked and mounted, and /etc and /var made writable by overlays whose
    upper directories are on it, so that configuration and state written at run time persist across reboots, OS
    updates and rollbacks while the slot itself never changes (RAUC's adaptive installs and the deltas read it as
    built). Files written at run time take precedence over the same files of a newer release. /tmp is a tmpfs from
    the start (bookworm mounts none; trixie's tmp.mount comes later, over it). The partitions are the slot's fstab
    entries for /data and /boot/efi, so one script serves the reference image and every Yocto machine (whose machine
    layer writes the fstab). While a factory reset is pending (its marker on the EFI partition) the data partition is
    left alone for the erasure, and the overlays are on a tmpfs for that boot. If the partition cannot be mounted (or
    the fstab names none), the overlays are on a tmpfs too: the device boots, and the agent, which needs /data,
    reports nothing until it is repaired. `root`: a directory the paths are taken under instead of / (a test runs the
    script in a mount namespace of its own). `init`: what it starts (the reference image boots it with `init=`;
    meta-bulkhead makes it /sbin/init and starts systemd itself). Where no initramfs ran (Yocto), it mounts /proc,
    /sys, /dev and /run first."""
    return f"""#!/bin/sh
# Bulkhead's read-only root (osbuild/layout.py): the slot is mounted read-only and this script runs first.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
root={root}
marker=$root{marker}
say() {{ echo "bulkhead preinit: $*" > /dev/console 2>/dev/null || true; }}
# The kernel filesystems, where no initramfs mounted them (a Yocto machine boots the slot directly): mount and e2fsck
# find LABEL= and UUID= devices through them, and /run takes the overlays when /data is not there. systemd takes them
# as they are.
[ -e "$root/proc/self" ] || mount -t proc proc "$root/proc"
[ -d "$root/sys/kernel" ] || mount -t sysfs sysfs "$root/sys"
[ -e "$root/dev/null" ] || mount -t devtmpfs devtmpfs "$root/dev"
grep -q "^[^ ]* $root/run " /proc/mounts || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
data=
esp=
while read -r dev mnt rest || [ -n "$dev" ]; do  # the last line may have no newline
    case "$dev" in "#"*|"") continue ;; esac
    case "$mnt" in /data|/data/) data=$dev ;; /boot/efi|/boot/efi/) esp=$dev ;; esac
done < "$root/etc/fstab"
reset=
if [ -n "$esp" ] && mount -o ro "$esp" "$root/boot/efi" 2>/dev/null; then  # the EFI partition, only to look
    [ -e "$marker" ] && reset=1
    umount "$root/boot/efi"
fi
upper=
if [ -n "$reset" ]; then
    say "a factory reset is pending: the data partition is left to it, /etc and /var changes last for this boot only"
elif [ -z "$data" ]; then
    say "/etc/fstab names no /data partition: /etc and /var changes last for this boot only"
else
    e2fsck -p "$data" > /dev/console 2>&1
    [ $? -lt 4 ] || say "e2fsck left errors on $data"
    if mount -t ext4 "$data" "$root/data"; then
        upper=$root/data/{OVERLAY_DIR}
    else
        say "$data could not be mounted: /etc and /var changes last for this boot only"
    fi
fi
if [ -z "$upper" ]; then
    upper=$root/run/bulkhead-overlay
    mkdir -p "$upper" && mount -t tmpfs -o mode=0755 bulkhead-overlay "$upper"
fi
for dir in etc var; do
    options="lowerdir=$root/$dir,upperdir=$upper/$dir/upper,workdir=$upper/$dir/work"
    mkdir -p "$upper/$dir/upper" "$upper/$dir/work" && mount -t overlay "$dir-overlay" -o "$options" "$root/$dir" ||
        say "/$dir could not be made writable"
done
mount -t tmpfs -o mode=1777,nosuid,nodev bulkhead-tmp "$root/tmp" || say "/tmp could not be mounted"
say "the root file system is read-only; /etc and /var are writable through $upper"
exec "$root{init}" "$@"
"""


# meta-bulkhead's copy: the image makes /sbin/init point at it (no machine's boot configuration changes), and it
# starts systemd.
YOCTO_PREINIT = preinit_script(init="/lib/systemd/systemd")


def os_release(version: str, compatible: str, codename: str) -> str:
    """The release the agent reports. VERSION_CODENAME is the Debian release underneath: the agent asks for its
    overlay suite by it, and the server matches the device's packages against that release's security data."""
    return (
        'NAME="Bulkhead reference OS"\nID=bulkhead\nID_LIKE=debian\n'
        f'VERSION_ID="{version}"\nVERSION_CODENAME={codename}\nIMAGE_ID="{compatible}"\nIMAGE_VERSION="{version}"\n'
    )


def network_unit() -> str:
    return "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n"
