# Shared by benches/proxy.sh and benches/instructions.sh (sourced, not run): the static backend
# and the HAProxy configuration, so both measure against the same peers.

# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s at most).
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

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

# write_nginx_cfg DIR LISTEN-PORT BACKEND-PORT [MIRROR-LISTEN-PORT MIRROR-BACKEND-PORT]: nginx as
# a reverse proxy with 2 workers and keep-alive upstreams into DIR/nginx.conf (pid and error log in
# DIR); with the mirror ports, a second server that also copies each request there (`mirror`);
# with PEER_AFFINITY=1 each worker bound to a CPU of its own.
write_nginx_cfg() {
  local affinity="" mirror_upstream="" mirror_server=""
  [ "${PEER_AFFINITY:-0}" = 1 ] && affinity="worker_cpu_affinity auto;"
  if [ -n "${4:-}" ]; then
    mirror_upstream="upstream mirror_app { server 127.0.0.1:$5; keepalive 256; }"
    mirror_server="server { listen 127.0.0.1:$4;
    location / { mirror /__mirror; proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
    location = /__mirror { internal; proxy_pass http://mirror_app\$request_uri; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
  fi
  cat > "$1/nginx.conf" <<NGX
worker_processes 2;
$affinity
error_log $1/nginx-error.log;
pid $1/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  upstream app { server 127.0.0.1:$3; keepalive 256; }
  $mirror_upstream
  server { listen 127.0.0.1:$2;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  $mirror_server
}
NGX
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
