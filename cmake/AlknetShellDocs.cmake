# Shell completion scripts and man pages, written at build time by the binaries themselves from
# their command tables (`PROGRAM completion bash|zsh`, `PROGRAM manpage`), installed Debian-style.
include(GNUInstallDirs)

set(ALKNET_SHARE_OUT ${PROJECT_BINARY_DIR}/share)
set(alknet_shell_docs)
foreach(program alknet-agent alknet-admin)
  set(bash_out ${ALKNET_SHARE_OUT}/bash-completion/completions/${program})
  set(zsh_out ${ALKNET_SHARE_OUT}/zsh/vendor-completions/_${program})
  set(man_out ${ALKNET_SHARE_OUT}/man/man1/${program}.1)
  add_custom_command(
    OUTPUT ${bash_out} ${zsh_out} ${man_out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${ALKNET_SHARE_OUT}/bash-completion/completions
            ${ALKNET_SHARE_OUT}/zsh/vendor-completions ${ALKNET_SHARE_OUT}/man/man1
    COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:${program}> "-DARGS=completion bash"
            -DOUTPUT=${bash_out} -P ${PROJECT_SOURCE_DIR}/cmake/RunToFile.cmake
    COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:${program}> "-DARGS=completion zsh"
            -DOUTPUT=${zsh_out} -P ${PROJECT_SOURCE_DIR}/cmake/RunToFile.cmake
    COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:${program}> -DARGS=manpage
            -DOUTPUT=${man_out} -P ${PROJECT_SOURCE_DIR}/cmake/RunToFile.cmake
    DEPENDS ${program} ${PROJECT_SOURCE_DIR}/cmake/RunToFile.cmake
    COMMENT "Writing the completion scripts and man page of ${program}"
    VERBATIM)
  list(APPEND alknet_shell_docs ${bash_out} ${zsh_out} ${man_out})
  install(FILES ${bash_out} DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
  install(FILES ${zsh_out} DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions)
  install(FILES ${man_out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
endforeach()
add_custom_target(alknet_shell_docs ALL DEPENDS ${alknet_shell_docs})
install(TARGETS alknet-agent alknet-admin RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
