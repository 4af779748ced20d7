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

# The kernel starts bulkhead-preinit, which starts systemd (no machine's kernel command line changes). The slot
# never changes on the device, so no package update can put systemd's link back. /etc persists through the overlay:
# openssh keeps its host keys there instead of the per-boot /var/run/ssh that read-only-rootfs points it at.
ROOTFS_POSTPROCESS_COMMAND += "bulkhead_read_only_root;"
bulkhead_read_only_root[doc] = "Makes bulkhead-preinit /sbin/init and keeps ssh's host keys in the persistent /etc"
bulkhead_read_only_root() {
    ln -sf ${libdir}/bulkhead/preinit ${IMAGE_ROOTFS}${base_sbindir}/init
    # as read-only-rootfs configures openssh when the image has host keys: /etc/ssh and its sshd_config
    if [ -f ${IMAGE_ROOTFS}${sysconfdir}/default/ssh ]; then
        echo "SYSCONFDIR=${sysconfdir}/ssh" >> ${IMAGE_ROOTFS}${sysconfdir}/default/ssh
        echo "SSHD_OPTS=" >> ${IMAGE_ROOTFS}${sysconfdir}/default/ssh
    fi
}

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
