#!/bin/sh
# The container's entrypoint. On a first start the image's flow, grammars and prompts are
# copied into the data volume, where the service reads them and the console writes its edits,
# so the edits survive a new container (an image upgrade). Files already in the volume are
# kept: an upgrade adds the image's new files and never overwrites what operators changed.
set -eu

bundled=${IVR_BUNDLED_DIR:-/app}
data=${IVR_DATA_DIR:-/data}

for dir in grammars prompts; do
    [ -d "$bundled/$dir" ] || continue
    mkdir -p "$data/$dir"
    added=$(cd "$bundled/$dir" && find . -type f | while read -r f; do
        if [ ! -e "$data/$dir/$f" ]; then
            mkdir -p "$(dirname "$data/$dir/$f")"
            cp -p "$f" "$data/$dir/$f"
            echo "$f"
        fi
    done | wc -l)
    if [ "$added" -gt 0 ]; then
        echo "entrypoint: copied $added file(s) of the image's $dir into $data/$dir"
    fi
done

exec "$@"
