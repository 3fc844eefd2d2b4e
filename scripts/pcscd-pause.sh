# Sourced by the scripts that start their own pcscd (only one can run on a machine):
# a system pcscd (socket-activated under systemd) is stopped now and started again on exit.
pcscd_paused=""
if [ -d /run/systemd/system ] && systemctl is-active --quiet pcscd.socket pcscd.service 2>/dev/null; then
    pcscd_paused=yes
    systemctl stop pcscd.socket pcscd.service
fi
trap 'if [ -n "$pcscd_paused" ]; then systemctl start pcscd.socket; fi' EXIT
