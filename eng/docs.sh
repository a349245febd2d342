# Documentation check (sourced by build.sh): every relative link in README.md and docs/*.md
# points somewhere, and every code block there is compiled and run as pasted (C# against the
# packed nupkg, C against the installed libfdsend, marked shell blocks in a copy of the
# working tree). How blocks are marked: eng/docs_check.py and CONTRIBUTING.md.
# SPDX-License-Identifier: MIT

docs_test() {
  local tmp rc=0
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/fdsend-docs.XXXXXX")"
  # the package this run packed, or a fresh one; the native build installed into a prefix
  if [ -z "${PACKAGE_RIDS:-}" ]; then managed_pack >"$tmp/pack.log" 2>&1 || { tail -30 "$tmp/pack.log"; rm -rf "$tmp"; return 1; }; fi
  cmake --install "$(NATIVE_BUILD_DIR)" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 \
    || { cat "$tmp/install.log"; rm -rf "$tmp"; return 1; }
  python3 "$ROOT/eng/docs_check.py" "$ROOT" "$PACKAGE_DIR" "$PACKAGE_VERSION" "$tmp/prefix" "$tmp/work" || rc=$?
  [ $rc -eq 0 ] && rm -rf "$tmp" || echo "(kept in $tmp)"
  return $rc
}
