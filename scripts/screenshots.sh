#!/usr/bin/env bash
# Starts vigie-gui under Xvfb against three agents on this machine (and one
# host where nothing listens), drives it with xdotool, and saves screenshots
# in docs/screenshots/. Everything stays on 127.0.0.1 and is stopped at the end.
#
# Needs Xvfb, ImageMagick's `import` and xdotool (installed with apt-get when
# missing and running as root). The clicks assume the window's default
# 1280 × 800 layout.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/screenshots
mkdir -p "$out"

if ! command -v Xvfb >/dev/null || ! command -v import >/dev/null || ! command -v xdotool >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq xvfb imagemagick xdotool \
            libx11-6 libx11-xcb1 libxcursor1 libxi6 libxkbcommon-x11-0 libfontconfig1 >/dev/null
    else
        echo "screenshots: install xvfb, imagemagick and xdotool first" >&2
        exit 1
    fi
fi

cargo build --release --features gui --bins
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Three agents on free loopback ports, which may transfer files under
# $work/srv; db1 points at a port nobody serves.
mkdir -p "$work/srv"
head -c 30000000 /dev/urandom > "$work/srv/app.log"
printf '[file_roots]\nadmin = ["%s"]\n' "$work/srv" > "$work/agent.toml"
echo "name,address,port,tags" > "$work/hosts.csv"
for name in web1 web2 web3; do
    "$bin/vigie-agent" --config "$work/agent.toml" --listen 127.0.0.1:0 --log-level error > "$work/$name.out" &
    pids+=($!)
    for _ in $(seq 50); do [ -s "$work/$name.out" ] && break; sleep 0.1; done
    port=$(sed -n 's/^listening on 127.0.0.1://p' "$work/$name.out")
    echo "$name,127.0.0.1,$port,web" >> "$work/hosts.csv"
done
free=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "db1,127.0.0.1,$free,db" >> "$work/hosts.csv"

display=:97
Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp > "$work/xvfb.log" 2>&1 &
pids+=($!)
export DISPLAY=$display
sleep 1
mkdir -p "$work/home"
HOME="$work/home" VIGIE_HISTORY="$work/history.jsonl" "$bin/vigie-gui" "$work/hosts.csv" > "$work/gui.log" 2>&1 &
pids+=($!)
window=$(xdotool search --sync --name vigie | head -n 1)
xdotool windowfocus --sync "$window"
sleep 3  # the hosts are checked

shot() { sleep "${2:-1}"; import -window root "$out/$1.png"; echo "saved $out/$1.png"; }
click() { xdotool mousemove "$1" "$2" click 1; }

xdotool key ctrl+shift+a                    # select every host
click 700 74                                  # the command line
xdotool type --delay 15 "uname -sr; df -h / | tail -n 1; echo 'a warning on stderr' >&2"
xdotool key Return
shot output 2
click 470 185; shot grouped                   # Grouped
click 178 180; click 564 185; shot info       # web1, then System info
( timeout 8 sh -c 'while :; do :; done' & )   # some CPU load for the chart
click 648 185; shot chart 12                  # Chart
click 718 185; sleep 1; click 560 268; shot history  # History, first entry
# Two fleet jobs started detached from the CLI, one still running: the
# Jobs view asks the agents about them when it opens.
cli() { HOME="$work/home" VIGIE_HISTORY="$work/history.jsonl" "$bin/vigie" --hosts "$work/hosts.csv" "$@" > /dev/null; }
cli -H web1 exec --detach -- 'uname -sr'
cli -g web exec --detach -- 'for i in $(seq 1 600); do echo step $i; sleep 1; done'
click 783 185; sleep 2; click 560 268; shot jobs 2   # Jobs, the newest
# Files: a file on every host pulled into DIR/HOST/NAME (db1 unreachable).
xdotool key ctrl+shift+a
click 839 185; click 620 371
xdotool type --delay 10 "$work/srv/app.log"
click 1240 371; shot files 3
click 1240 34; shot confirm                   # Kill asks first
xdotool key Escape; sleep 0.5; click 820 400
click 1216 780; click 390 185; shot light     # the light theme

# The dashboard of a thousand hosts: agents of the benchmark suite's farm
# (a hundred per process, each a real agent on its own loopback port),
# twenty entries where nothing listens, and a busy loop so that the CPU
# figures differ from one sample to the next.
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
cargo bench --bench suite --features gui --no-run
suite=$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/suite-* | grep -v '\.d$' | head -n 1)
: > "$work/fleet.txt"
n=0
for farm in $(seq 10); do
    mkfifo "$work/farm$farm.in"
    "$suite" --agent-farm 100 < "$work/farm$farm.in" > "$work/farm$farm.out" &
    pids+=($!)
    exec {keep}> "$work/farm$farm.in"   # the farm serves while this is open
    for _ in $(seq 100); do [ "$(wc -l < "$work/farm$farm.out")" -ge 100 ] && break; sleep 0.1; done
    while read -r port; do
        printf 'node%04d=127.0.0.1:%s\n' "$n" "$port" >> "$work/fleet.txt"
        n=$((n + 1))
    done < "$work/farm$farm.out"
done
for i in $(seq 20); do
    free=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'gone%02d=127.0.0.1:%s\n' "$i" "$free" >> "$work/fleet.txt"
done
HOME="$work/home" "$bin/vigie-gui" "$work/fleet.txt" > "$work/gui2.log" 2>&1 &
pids+=($!)
window=$(xdotool search --sync --name fleet | head -n 1)
xdotool windowfocus --sync "$window"
sleep 4
( timeout 40 sh -c 'while :; do :; done' & )
click 1216 780                                # back to the dark theme
click 917 185                                 # Dashboard
sleep 6
# Thresholds the busy machine's hosts are near: some cross them.
click 1040 259; xdotool key ctrl+a; xdotool type --delay 10 "cpu=69,memory=90,load=4,disk=90"; xdotool key Return
xdotool mousemove 800 350                     # point at a square
shot dashboard 6
