#!/usr/bin/env bash
# Make a Docker engine answer on this machine: install docker.io (with debootstrap, which builds the
# local base image) when missing, start dockerd when no engine answers. Needs root for both.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)  # a real registry for the publish tests
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: ${need[*]} missing and not root; install them (apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "installing ${need[*]} ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "error: no Docker engine answers and only root can start dockerd here" >&2
  exit 1
fi
echo "starting dockerd (log: /var/log/dockerd.log) ..."
nohup dockerd >/var/log/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "dockerd is up"
    exit 0
  fi
  sleep 1
done
echo "error: dockerd did not answer within 60 s; last log lines:" >&2
tail -n 20 /var/log/dockerd.log >&2
exit 1
