# Container storage on the data partition: images survive an OS update and do not fill a rootfs slot.
FILESEXTRAPATHS:prepend:bulkhead := "${THISDIR}/files:"
