#!/usr/bin/env bash
# `dvc plots show` offline. DVC's page loads Vega, Vega-Lite and Vega-Embed from a CDN; this fetches the
# same versions from the npm registry once, inlines them into .vega/template.html (git-ignored) and points
# this checkout's DVC at it (.dvc/config.local), so dvc_plots/index.html is self-contained.
# Without npm or the registry it says so and leaves DVC's default (CDN) page.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
template=.vega/template.html
packages=(vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2)  # the versions DVC's own page names
if [ ! -s "$template" ]; then
    if ! command -v npm >/dev/null; then
        echo "install-vega: npm not found; dvc plots show will load Vega from its CDN"; exit 0
    fi
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    if ! (cd "$tmp" && npm pack -q "${packages[@]}" >/dev/null); then
        echo "install-vega: the npm registry is unreachable; dvc plots show will load Vega from its CDN"; exit 0
    fi
    mkdir -p .vega
    {
        printf '<!DOCTYPE html>\n<html>\n<head>\n{refresh_tag}\n<title>DVC plots</title>\n'
        for name in vega vega-lite vega-embed; do
            printf '<script>\n'
            tar xzf "$tmp"/"$name"-[0-9]*.tgz -O "package/build/$name.min.js"
            printf '\n</script>\n'
        done
        printf '<style>table { border-spacing: 15px; }</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n'
    } > "$template.tmp"
    mv "$template.tmp" "$template"
fi
dvc config --local plots.html_template ../"$template"  # relative to .dvc/
echo "install-vega: dvc plots show renders offline ($template, ${packages[*]})"
