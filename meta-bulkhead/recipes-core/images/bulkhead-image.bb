# nooelint: oelint.var.suggestedvar.CVE_PRODUCT
# (an image and its bundle fetch nothing and are no CVE product of their own: their packages are checked one by one)
SUMMARY = "Bulkhead container OS image"
DESCRIPTION = "A root filesystem for one RAUC A/B slot: systemd, RAUC, Podman and the \
               Bulkhead agent. The machine layer (meta-rauc-community) provides the partition \
               layout, the bootloader integration and RAUC's system.conf; the data partition \
               at /data holds the agent's state and the container storage."
HOMEPAGE = "https://bulkhead.invalid"
BUGTRACKER = "https://bulkhead.invalid/issues"
SECTION = "base"
LICENSE = "MIT"

inherit core-image

# package-management: the dpkg database stays in the image (the agent reports the installed packages from it).
# read-only-rootfs: the slot is mounted read-only, as in the Debian reference image; bulkhead-preinit makes /etc and
# /var overlays on the data partition before systemd starts. The agent refuses package changes on a read-only root.
IMAGE_FEATURES += "ssh-server-openssh package-management read-only-rootfs"

IMAGE_INSTALL:append = " \
    bulkhead-agent \
    bulkhead-preinit \
    ca-certificates \
    podman \
    rauc \
"

# The slot image RAUC installs (bulkhead-bundle), next to the machine's wic disk image
IMAGE_FSTYPES:append = " ext4"

# Room for what an update adds before the next release shrinks it again
IMAGE_ROOTFS_EXTRA_SPACE = "262144"
