# The Debian package (CPack DEB, `scripts/package.sh`): both binaries, man pages and completions
# (AlknetShellDocs), the systemd unit and its examples, /etc/alknet/agent.yaml as a conffile and
# the maintainer scripts in deploy/debian/. Only with -DALKNET_PACKAGE=ON and prefix /usr, so that
# `cmake --install` elsewhere never writes to /etc.
option(ALKNET_PACKAGE "Install the system-service files (unit, /etc/alknet) for the .deb" OFF)
if(NOT ALKNET_PACKAGE)
  return()
endif()
install(FILES deploy/systemd/alknet-agent.service DESTINATION lib/systemd/system)
install(FILES deploy/systemd/alknet-agent.socket.example
              deploy/systemd/alknet-agent.service.d/low-port.conf.example
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(FILES deploy/debian/agent.yaml DESTINATION /etc/alknet)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME alknet)
set(CPACK_PACKAGE_CONTACT "alknet maintainers <alknet@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "SSH tunnel agent: SSH over TCP, TLS or QUIC, managed live")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/debian/postinst ${PROJECT_SOURCE_DIR}/deploy/debian/prerm
    ${PROJECT_SOURCE_DIR}/deploy/debian/postrm ${PROJECT_SOURCE_DIR}/deploy/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_WARN_ON_ABSOLUTE_INSTALL_DESTINATION OFF)
include(CPack)
