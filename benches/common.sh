# Shared by benches/proxy.sh and benches/instructions.sh (sourced, not run): the static backend
# and the HAProxy configuration, so both measure against the same peers.

# write_static_sh FILE NGINX: a script that runs nginx in the foreground on $PORT answering `ok`
# to everything, its files in the current directory (an understudy instance folder, or ours).
write_static_sh() {
  cat > "$1" <<STATIC
#!/bin/sh
cat > nginx.conf <<EOF
worker_processes 1;
daemon off;
pid nginx.pid;
error_log stderr;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 10000000;
  server { listen 127.0.0.1:\$PORT; location / { default_type text/plain; return 200 "ok"; } }
}
EOF
exec $2 -e stderr -p "\$PWD" -c "\$PWD/nginx.conf"
STATIC
  chmod +x "$1"
}

# write_haproxy_cfg FILE LISTEN-PORT BACKEND-PORT [PIDFILE]: 2 threads, idle server connections
# shared between users, no logging; with PEER_AFFINITY=1 each thread bound to a CPU of its own.
write_haproxy_cfg() {
  {
    echo 'global'
    echo '  nbthread 2'
    if [ "${PEER_AFFINITY:-0}" = 1 ]; then echo '  cpu-map auto:1/1-2 0-1'; fi
    echo '  maxconn 4000'
    if [ -n "${4:-}" ]; then echo "  pidfile $4"; fi
    echo 'defaults'
    echo '  mode http'
    echo '  timeout connect 5s'
    echo '  timeout client 30s'
    echo '  timeout server 30s'
    echo '  timeout http-keep-alive 30s'
    echo '  http-reuse always'
    echo 'frontend users'
    echo "  bind 127.0.0.1:$2"
    echo '  default_backend app'
    echo 'backend app'
    echo "  server app1 127.0.0.1:$3 maxconn 1000"
  } > "$1"
}
