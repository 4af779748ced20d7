SUMMARY = "Bulkhead read-only root: /etc and /var overlays on the data partition"
DESCRIPTION = "Runs as PID 1 before systemd, as in the Debian reference image: mounts the \
               kernel filesystems, checks and mounts the partition the slot's fstab names for \
               /data, makes /etc and /var overlays whose changes land on it (the machine id, \
               the agent's configuration, the journal), mounts /tmp, then starts systemd. \
               bulkhead-image makes /sbin/init point at it, so no machine's boot \
               configuration changes."
HOMEPAGE = "https://bulkhead.invalid"
BUGTRACKER = "https://bulkhead.invalid/issues"
SECTION = "base"
LICENSE = "Apache-2.0"
# (the script is generated from this repository, src/bulkhead/osbuild/layout.py, which is Apache-2.0 licensed)
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"
CVE_PRODUCT = "bulkhead"

SRC_URI = "file://preinit"

S = "${WORKDIR}"

inherit allarch

do_install() {
    install -d ${D}${libdir}/bulkhead ${D}/data
    install -m 0755 ${WORKDIR}/preinit ${D}${libdir}/bulkhead/preinit
}

FILES:${PN} += "${libdir}/bulkhead/preinit /data"

# e2fsck checks the data partition before it is mounted; mount, grep and the overlays are the system's.
RDEPENDS:${PN} = "e2fsprogs-e2fsck systemd"
