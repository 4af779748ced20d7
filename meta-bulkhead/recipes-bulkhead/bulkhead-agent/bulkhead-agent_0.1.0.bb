SUMMARY = "Bulkhead device agent"
DESCRIPTION = "Enrolls the device with a Bulkhead server, converges it to its desired \
               state (OS release through RAUC, Podman containers, files), checks health \
               after an update and reports."
HOMEPAGE = "https://bulkhead.invalid"
BUGTRACKER = "https://bulkhead.invalid/issues"
SECTION = "admin"
LICENSE = "Apache-2.0"
CVE_PRODUCT = "bulkhead"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

SRC_URI = "\
    file://bulkhead-agent.service \
    file://bulkhead-containers.service \
    file://agent-config \
    file://containers \
    file://agent.toml.in \
"

# The agent is built from the Bulkhead source tree this layer lives in (BULKHEAD_SRCDIR, set in
# layer.conf). externalsrc hashes the tree's git-tracked files, so a change to the agent rebuilds it.
inherit externalsrc python_setuptools_build_meta systemd

EXTERNALSRC = "${BULKHEAD_SRCDIR}"
EXTERNALSRC_BUILD = "${WORKDIR}/build"

# Where the agent enrolls and with which bootstrap token (both forwarded by kas from the environment).
BULKHEAD_SERVER ??= "https://bulkhead.example.invalid"
BULKHEAD_BOOTSTRAP_TOKEN ??= ""

# bulkhead-containers: Podman's storage checked at boot, containers stopped before /data is unmounted.
SYSTEMD_SERVICE:${PN} = "bulkhead-agent.service bulkhead-containers.service"

do_install:append() {
    # Only the device side: the server and the CLI need dependencies a device does not carry.
    rm -rf ${D}${PYTHON_SITEPACKAGES_DIR}/bulkhead/server ${D}${PYTHON_SITEPACKAGES_DIR}/bulkhead/cli
    rm -f ${D}${bindir}/bulkhead

    install -d ${D}${systemd_system_unitdir} ${D}${libdir}/bulkhead ${D}${sysconfdir}/bulkhead
    install -m 0644 ${WORKDIR}/bulkhead-agent.service ${D}${systemd_system_unitdir}/bulkhead-agent.service
    install -m 0644 ${WORKDIR}/bulkhead-containers.service ${D}${systemd_system_unitdir}/bulkhead-containers.service
    install -m 0755 ${WORKDIR}/agent-config ${D}${libdir}/bulkhead/agent-config
    install -m 0755 ${WORKDIR}/containers ${D}${libdir}/bulkhead/containers
    sed -e 's|@SERVER@|${BULKHEAD_SERVER}|' -e 's|@BOOTSTRAP_TOKEN@|${BULKHEAD_BOOTSTRAP_TOKEN}|' \
        ${WORKDIR}/agent.toml.in > ${D}${sysconfdir}/bulkhead/agent.toml.in
    chmod 0600 ${D}${sysconfdir}/bulkhead/agent.toml.in
}

FILES:${PN} += "${libdir}/bulkhead ${systemd_system_unitdir}/bulkhead-agent.service ${systemd_system_unitdir}/bulkhead-containers.service"
CONFFILES:${PN} = "${sysconfdir}/bulkhead/agent.toml.in"

# The standard library covers the agent (HTTP, TOML, JSON); the bundle library needs cryptography and
# asn1crypto. python3-modules keeps the module list exact; a product may narrow it after a build-host check.
RDEPENDS:${PN} = "\
    podman \
    python3-asn1crypto \
    python3-cryptography \
    python3-modules \
    rauc \
"
