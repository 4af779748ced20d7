# nooelint: oelint.var.suggestedvar.CVE_PRODUCT oelint.var.mandatoryvar.SRC_URI
# (an image and its bundle fetch nothing and are no CVE product of their own: their packages are checked one by one)
SUMMARY = "Bulkhead OS update bundle"
DESCRIPTION = "A signed RAUC verity bundle of bulkhead-image for one rootfs slot, with a \
               block-hash-index so that RAUC's adaptive update fetches only the blocks a \
               device does not have."
HOMEPAGE = "https://bulkhead.invalid"
BUGTRACKER = "https://bulkhead.invalid/issues"
SECTION = "base"
LICENSE = "MIT"

inherit bundle

RAUC_BUNDLE_FORMAT = "verity"
# Must equal the compatible of the machine layer's system.conf; the kas machine files set it where it is
# not the machine name (meta-rauc-qemux86: "qemux86-64 demo platform").
RAUC_BUNDLE_COMPATIBLE ?= "${MACHINE}"
RAUC_BUNDLE_VERSION = "${DISTRO_VERSION}"
RAUC_BUNDLE_DESCRIPTION = "Bulkhead container OS ${DISTRO_VERSION}"

RAUC_BUNDLE_SLOTS = "rootfs"
RAUC_SLOT_rootfs = "bulkhead-image"
RAUC_SLOT_rootfs[fstype] = "ext4"
RAUC_SLOT_rootfs[adaptive] = "block-hash-index"

# Never sign with meta-rauc-community's published example keys (see conf/distro/bulkhead.conf).
python bulkhead_check_signing_key() {
    missing = [v for v in ("BULKHEAD_RAUC_KEY_FILE", "BULKHEAD_RAUC_CERT_FILE") if not d.getVar(v)]
    if missing:
        bb.fatal("set %s to the release signing key and certificate (a file or a PKCS#11 URI); "
                 "the example keys of meta-rauc-community are never used" % " and ".join(missing))
}
bulkhead_check_signing_key[doc] = "Refuses to build a bundle without the release signing key and certificate"
do_bundle[prefuncs] += "bulkhead_check_signing_key"
