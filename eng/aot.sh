# The NativeAOT check (sourced by build.sh).
# SPDX-License-Identifier: MIT

# NativeAOT: publish the demo (FdSend's and the demo's sources) for net10.0 and run it.
aot_test() {
  local rid tfm=net10.0 out log
  rid="$(host_rid)"; out="$ROOT/build/aot-$rid"; log="$ROOT/build/aot-$rid.log"
  rm -rf "$out"
  dotnet publish "$ROOT/tests/FdSend.AotCheck" -c Release -r "$rid" -p:AotTargetFramework=$tfm \
    -o "$out" --nologo -v quiet >"$log" 2>&1 || { cat "$log"; echo "0 passed, 1 failed: NativeAOT publish"; return 1; }
  if "$out/FdSend.Demo" >"$log" 2>&1 && grep -q "no connection was lost" "$log" \
     && grep -q "read every file through its descriptor" "$log"; then
    echo "NativeAOT ($tfm, $rid): demo ran correctly as a native binary ($(du -h "$out/FdSend.Demo" | cut -f1))"
    echo "1 passed, 0 failed: NativeAOT demo"
  else
    cat "$log"; echo "0 passed, 1 failed: NativeAOT demo"; return 1
  fi
}
