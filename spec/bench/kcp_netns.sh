#!/usr/bin/env bash
# kcp_netns.sh up|down NS_A NS_B: the two ends of wr_lossy_link's link. `up` creates two network
# namespaces, each with a TUN device wrl0 (persistent, so the link program can attach and detach),
# 10.201.0.1/24 in NS_A and 10.201.0.2/24 in NS_B, and lo up; the TUNs carry nothing until
# wr_lossy_link joins them:
#   wr_lossy_link --ns-a NS_A --dev-a wrl0 --ns-b NS_B --dev-b wrl0 [--delay MS --loss PCT ...]
# `down` deletes both namespaces (and with them the TUNs). Root only. Sourced by kcp_link.sh and
# run by the KCP spec.
set -euo pipefail
[[ $# == 3 && ($1 == up || $1 == down) ]] || { echo "usage: kcp_netns.sh up|down NS_A NS_B" >&2; exit 2; }
action=$1
ns=("$2" "$3")
addr=(10.201.0.1/24 10.201.0.2/24)
if [[ $action == down ]]; then
    for n in "${ns[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    exit 0
fi
for i in 0 1; do
    ip netns add "${ns[i]}"
    ip -n "${ns[i]}" link set lo up
    ip -n "${ns[i]}" tuntap add dev wrl0 mode tun
    ip -n "${ns[i]}" addr add "${addr[i]}" dev wrl0
    ip -n "${ns[i]}" link set wrl0 up
done
