// A real Debian nginx on loopback with Debian's TLS settings, the stealth reference.
#include "tests/support/nginx_process.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "tests/support/test_ports.h"

namespace alknet::testing {

NginxProcess::NginxProcess(const TempDir& dir, const NginxOptions& options) {
  if (!HaveProgram("nginx")) return;
  std::string root = dir.File("nginx");
  mkdir(root.c_str(), 0755);
  std::string cert = options.cert;
  std::string key = options.key;
  if (cert.empty()) {
    cert = root + "/cert.pem";
    key = root + "/key.pem";
    CommandResult made = RunCommand({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                     "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                                     "-out", cert, "-days", "2", "-subj", "/CN=localhost"});
    if (made.exit_code != 0) {
      ADD_FAILURE() << "openssl req: " << made.err;
      return;
    }
  }
  std::string t = std::to_string(options.timeout_seconds) + "s";
  std::string why;
  process_ = StartListening(
      [&](uint16_t port) {
        WriteFile(root + "/nginx.conf",
                  "daemon off;\nmaster_process off;\nworker_processes 1;\n"
                  "pid " + root + "/nginx.pid;\nerror_log " + root + "/error.log;\n"
                  "events { worker_connections 64; }\n"
                  "http {\n  access_log off;\n"
                  // Debian 12's /etc/nginx/nginx.conf, "SSL Settings".
                  "  ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;\n"
                  "  ssl_prefer_server_ciphers on;\n"
                  "  client_header_timeout " + t + ";\n  keepalive_timeout " + t + ";\n"
                  "  client_body_temp_path " + root + "/body;\n  proxy_temp_path " + root + "/proxy;\n"
                  "  fastcgi_temp_path " + root + "/fastcgi;\n  uwsgi_temp_path " + root + "/uwsgi;\n"
                  "  scgi_temp_path " + root + "/scgi;\n"
                  "  include /etc/nginx/mime.types;\n  default_type application/octet-stream;\n"
                  "  server {\n    listen 127.0.0.1:" + std::to_string(port) + " ssl default_server;\n"
                  "    ssl_certificate " + cert + ";\n    ssl_certificate_key " + key + ";\n"
                  "    location / { return 404; }\n  }\n}\n",
                  0644);
        return std::vector<std::string>{"nginx", "-e", root + "/error.log", "-p", root, "-c",
                                        root + "/nginx.conf"};
      },
      dir.path(), "nginx", &port_, &why);
  if (process_ == nullptr) {
    port_ = 0;
    ADD_FAILURE() << "nginx did not start: " << why << ReadFile(root + "/error.log");
  }
}

}  // namespace alknet::testing
