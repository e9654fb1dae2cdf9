#!/usr/bin/env bash
# Install or update the Loa agent on a Raspberry Pi (Raspberry Pi OS bookworm). Run as root:
#
#   sudo ./install.sh SOURCE [--token-file FILE] [--agent-id ID] [--mqtt-url URL]
#                            [--time-sync chrony|timesyncd] [--allow-reboot]
#
# SOURCE   the Loa repository (a directory) or a built wheel (loa-*.whl); only PyPI packages are
#          downloaded besides it.
# --token-file FILE   the agent's secret returned by POST /api/v1/devices (otherwise asked for, unless
#                     /etc/loa-agent/secret already exists).
# --agent-id, --mqtt-url   fill in a new /etc/loa-agent/agent.toml; an existing one is never changed.
# --time-sync   chrony (default: measures and reports its offset) or systemd-timesyncd (lighter, no offset).
# --allow-reboot   let the agent user reboot the Pi (polkit rule) for the guarded `reboot` command;
#                  agent.toml must also say allow_reboot = true.
#
# Safe to run again (e.g. to upgrade): existing configuration and secret are kept.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
user=loa-agent
prefix=/opt/loa-agent
etc=/etc/loa-agent
state=/var/lib/loa-agent
unit=/etc/systemd/system/loa-agent.service
example_id="tq-08740-c01"
example_url="mqtts://loa.example.gov.vn:8883"

die() { echo "install.sh: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }

source_arg="" token_file="" agent_id="" mqtt_url="" time_sync=chrony allow_reboot=no
while [ $# -gt 0 ]; do
  case "$1" in
    --token-file) [ $# -ge 2 ] || die "--token-file needs a file"; token_file="$2"; shift 2 ;;
    --agent-id) [ $# -ge 2 ] || die "--agent-id needs a value"; agent_id="$2"; shift 2 ;;
    --mqtt-url) [ $# -ge 2 ] || die "--mqtt-url needs a value"; mqtt_url="$2"; shift 2 ;;
    --time-sync) [ $# -ge 2 ] || die "--time-sync needs chrony or timesyncd"; time_sync="$2"; shift 2 ;;
    --allow-reboot) allow_reboot=yes; shift ;;
    -h|--help) usage 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$source_arg" ] || die "only one SOURCE may be given"; source_arg="$1"; shift ;;
  esac
done
[ -n "$source_arg" ] || usage 2
case "$time_sync" in chrony|timesyncd) ;; *) die "--time-sync must be chrony or timesyncd" ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root (sudo)"
[ -e "$source_arg" ] || die "$source_arg: no such directory or wheel"
source_path="$(realpath "$source_arg")"
if [ -d "$source_path" ]; then
  [ -f "$source_path/pyproject.toml" ] || die "$source_path has no pyproject.toml: not the Loa repository"
else
  case "$source_path" in *.whl) ;; *) die "$source_path is neither a directory nor a .whl file" ;; esac
fi
if [ -n "$token_file" ]; then
  [ -r "$token_file" ] || die "$token_file: cannot read the secret"
elif [ ! -s "$etc/secret" ] && [ ! -t 0 ]; then  # fail before installing anything
  die "no secret: pass --token-file FILE (the token returned by POST /api/v1/devices)"
fi
if [ -n "$agent_id" ] && ! [[ "$agent_id" =~ ^[a-z0-9][a-z0-9_-]{0,62}$ ]]; then
  die "agent id '$agent_id': lowercase letters, digits, '-' or '_', at most 63 characters"
fi
if [ -n "$mqtt_url" ] && ! [[ "$mqtt_url" =~ ^mqtts?://[^/[:space:]\"]+$ ]]; then
  die "MQTT URL '$mqtt_url' must look like mqtts://host:8883"
fi

echo "== system packages"
# Time sync: playback is scheduled by absolute UTC times and a Pi has no battery-backed clock.
# alsa-utils: aplay and amixer. python3-lgpio: the GPIO library gpiozero drives the relay with on
# bookworm (it needs the C library, so it comes from apt and the venv sees the system packages).
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
packages=(python3-venv ffmpeg alsa-utils)
if [ "$time_sync" = chrony ]; then packages+=(chrony); else packages+=(systemd-timesyncd); fi
if apt-cache show python3-lgpio >/dev/null 2>&1; then packages+=(python3-lgpio); fi
apt-get install -y -qq "${packages[@]}" >/dev/null

echo "== user $user"
if ! id "$user" >/dev/null 2>&1; then
  useradd --system --user-group --home-dir "$state" --no-create-home --shell /usr/sbin/nologin "$user"
fi
groups=audio
if getent group gpio >/dev/null; then groups="audio,gpio"; fi
usermod -a -G "$groups" "$user"

echo "== Python environment in $prefix/venv"
install -d -m 0755 "$prefix"
[ -x "$prefix/venv/bin/python" ] || python3 -m venv --system-site-packages "$prefix/venv"
"$prefix/venv/bin/pip" install -q --upgrade pip
source_url="$("$prefix/venv/bin/python" -c 'import pathlib, sys; print(pathlib.Path(sys.argv[1]).as_uri())' "$source_path")"
# pip always rebuilds and reinstalls a local directory, but skips a wheel whose version is already
# installed: force that one, so re-running with a new build of the same version upgrades in place.
"$prefix/venv/bin/pip" install -q --upgrade "loa[agent,pi] @ $source_url"
if [ -f "$source_path" ]; then
  "$prefix/venv/bin/pip" install -q --force-reinstall --no-deps "loa @ $source_url"
fi
"$prefix/venv/bin/loa" --help >/dev/null

echo "== configuration in $etc"
install -d -m 0750 -o root -g "$user" "$etc"
if [ ! -e "$etc/agent.toml" ]; then
  install -m 0640 -o root -g "$user" "$here/agent.toml.example" "$etc/agent.toml"
  [ -z "$agent_id" ] || sed -i "s|^agent_id = \"$example_id\"|agent_id = \"$agent_id\"|" "$etc/agent.toml"
  [ -z "$mqtt_url" ] || sed -i "s|^url = \"$example_url\"|url = \"$mqtt_url\"|" "$etc/agent.toml"
  echo "   wrote $etc/agent.toml"
else
  [ -z "$agent_id$mqtt_url" ] || echo "   $etc/agent.toml exists: --agent-id/--mqtt-url ignored (edit it)"
fi

secret="$etc/secret"
write_secret() {  # stdin -> $secret, 0600, readable by the agent only
  local tmp
  tmp="$(mktemp "$etc/.secret.XXXXXX")"
  tr -d '\r\n' > "$tmp"
  local length
  length="$(wc -c < "$tmp")"
  if [ "$length" -lt 16 ]; then rm -f "$tmp"; die "the secret must have at least 16 characters"; fi
  chown "$user:$user" "$tmp"
  chmod 0600 "$tmp"
  mv -f "$tmp" "$secret"
  echo "   wrote $secret"
}
if [ -n "$token_file" ]; then
  write_secret < "$token_file"
elif [ ! -s "$secret" ]; then
  [ -t 0 ] || die "no secret: pass --token-file FILE (the token returned by POST /api/v1/devices)"
  read -r -s -p "Agent secret (token from POST /api/v1/devices): " token; echo
  printf '%s' "$token" | write_secret
  unset token
fi

echo "== state directory $state"
install -d -m 0750 -o "$user" -g "$user" "$state"

echo "== time synchronisation ($time_sync)"
if [ "$time_sync" = chrony ]; then
  systemctl enable --now chrony
  # Makes time-sync.target wait (up to its timeout) until chrony has synchronised, so the agent does
  # not start with a Pi's stale boot clock. Not shipped by every chrony package: enable it if present.
  if systemctl cat chrony-wait.service >/dev/null 2>&1; then
    systemctl enable chrony-wait.service
  fi
else
  systemctl enable --now systemd-timesyncd
  timedatectl set-ntp true
  systemctl enable systemd-time-wait-sync.service
fi

if [ "$allow_reboot" = yes ]; then
  echo "== reboot permission (polkit)"
  install -d -m 0755 /etc/polkit-1/rules.d
  cat > /etc/polkit-1/rules.d/50-loa-agent-reboot.rules <<RULES
// Installed by Loa's install.sh --allow-reboot: the agent may reboot the Pi on a confirmed command.
polkit.addRule(function(action, subject) {
  if ((action.id == "org.freedesktop.login1.reboot" ||
       action.id == "org.freedesktop.login1.reboot-multiple-sessions") && subject.user == "$user") {
    return polkit.Result.YES;
  }
});
RULES
fi

echo "== systemd unit"
install -m 0644 "$here/loa-agent.service" "$unit"
dropin="$unit.d/10-no-gpio.conf"
if getent group gpio >/dev/null; then
  rm -f "$dropin"
else  # systemd refuses to start a unit whose SupplementaryGroups= names a missing group
  install -d -m 0755 "$unit.d"
  printf '[Service]\nSupplementaryGroups=\nSupplementaryGroups=audio\n' > "$dropin"
fi
systemctl daemon-reload
systemctl enable loa-agent.service

if grep -q "^agent_id = \"$example_id\"" "$etc/agent.toml" || grep -q "^url = \"$example_url\"" "$etc/agent.toml"; then
  echo "Installed. Edit $etc/agent.toml (agent_id, mqtt url), then: systemctl restart loa-agent"
else
  systemctl restart loa-agent.service
  echo "Installed and started. Check: systemctl status loa-agent; journalctl -u loa-agent -f"
fi
