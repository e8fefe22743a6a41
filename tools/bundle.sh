#!/usr/bin/env bash
# A relocatable bundle of fibertrain for machines that have the CUDA driver, CUDA runtime,
# cuBLAS and NCCL but not Open MPI, HDF5, yaml-cpp, fmt or OpenBLAS (GPU nodes often look
# like this). It holds the binary, every shared library it needs that such a machine lacks,
# and Open MPI's runtime (mpirun, orted, plugins, help texts), laid out as under /usr so
# that OPAL_PREFIX relocates it.
#
#   tools/bundle.sh [BINARY] [OUT]      (defaults: build/trainer/fibertrain, dist/fibertrain)
#   OUT/bin/fibertrain --version        # on the GPU machine, from anywhere
#   OUT/bin/mpirun -n 2 OUT/bin/fibertrain train configs/tiny.yaml --set device=cuda
#
# CUDA's own libraries (libcudart, libcublas, libnccl) and the driver (libcuda) are left
# to the machine: they are large and must match its driver.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/trainer/fibertrain}
out=${2:-dist/fibertrain}
[ -x "$bin" ] || { echo "bundle: no binary at $bin (tools/setup.sh build)" >&2; exit 2; }
command -v ompi_info >/dev/null || { echo "bundle: Open MPI (ompi_info) not found" >&2; exit 1; }
ompi_path() { ompi_info --path "$1" --parsable | cut -d: -f3-; }
ompi_plugins=$(ompi_path pkglibdir)   # e.g. /usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3
ompi_data=$(ompi_path pkgdatadir)     # help texts, e.g. /usr/share/openmpi
[ -d "$ompi_plugins" ] || { echo "bundle: cannot find Open MPI's plugins" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/usr/bin" "$out/usr/share"

# Libraries a GPU machine provides itself: the C library family and CUDA's.
keep_out='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|librt\.so|libpthread\.so|libresolv\.so|libcuda\.so|libcudart|libcublas|libnccl|libnvidia|libutil\.so)'
copy_deps() {  # copy_deps FILE...: the shared libraries these need, into $out/lib
  ldd "$@" 2>/dev/null | awk '/=> \//{print $1, $3}' | sort -u | while read -r name path; do
    [[ "$name" =~ $keep_out ]] && continue
    [ -e "$out/lib/$name" ] || cp -L "$path" "$out/lib/$name"
  done
}

cp -L "$bin" "$out/bin/fibertrain.bin"
copy_deps "$bin"
# The GPU tests, when built, so that tools/gpu-check.sh runs them there too.
gpu_tests=$(dirname "$bin")/../tests/test_cuda_ops
[ -x "$gpu_tests" ] && cp -L "$gpu_tests" "$out/bin/test_cuda_ops.bin" && copy_deps "$gpu_tests"
# Open MPI's runtime, mirrored under usr/ so that OPAL_PREFIX finds plugins and help texts.
plugins_rel=${ompi_plugins#/usr/}
mkdir -p "$out/usr/$plugins_rel"
cp -L "$ompi_plugins"/*.so "$out/usr/$plugins_rel/"
for tool in orted orterun mpirun; do
  [ -e "/usr/bin/$tool" ] && cp -L "/usr/bin/$tool" "$out/usr/bin/$tool"
done
[ -d "$ompi_data" ] && cp -rL "$ompi_data" "$out/usr/share/"
copy_deps "$out"/usr/bin/* "$out/usr/$plugins_rel"/*.so

# Debug sections are most of the bytes; a bundle is for running.
strip --strip-debug "$out"/bin/*.bin "$out"/lib/*.so* "$out/usr/$plugins_rel"/*.so 2>/dev/null || true

# The bundled libpmix always scans its build-time plugin directory; on a machine with
# another PMIx there, each launch printed dlopen errors (undefined symbol:
# pmix_output_info). Its plugins (zlib compression of start-up data, resource-manager
# hints) are optional: it loads none, and says nothing of the missing compression.
env_lines='here=$(cd "$(dirname "$0")/.." && pwd)
export OPAL_PREFIX="$here/usr"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$here/usr/bin:$PATH"
export PMIX_MCA_mca_base_component_disable_dlopen=1 PMIX_MCA_pcompress_base_silence_warning=1'
cat >"$out/bin/fibertrain" <<EOF
#!/usr/bin/env bash
# fibertrain from its bundle: the libraries and Open MPI beside it.
$env_lines
exec "\$here/bin/fibertrain.bin" "\$@"
EOF
cat >"$out/bin/mpirun" <<EOF
#!/usr/bin/env bash
# Open MPI's mpirun from the bundle; ranks inherit the bundle's environment.
$env_lines
exec "\$here/usr/bin/mpirun" -x OPAL_PREFIX -x LD_LIBRARY_PATH -x PATH -x PMIX_MCA_mca_base_component_disable_dlopen \\
  -x PMIX_MCA_pcompress_base_silence_warning "\$@"
EOF
if [ -e "$out/bin/test_cuda_ops.bin" ]; then
  cat >"$out/bin/test_cuda_ops" <<EOF
#!/usr/bin/env bash
# The GPU tests from the bundle.
$env_lines
exec "\$here/bin/test_cuda_ops.bin" "\$@"
EOF
  chmod +x "$out/bin/test_cuda_ops"
fi
chmod +x "$out/bin/fibertrain" "$out/bin/mpirun"
tar -C "$(dirname "$out")" -cJf "$out.tar.xz" "$(basename "$out")"
echo "bundle: $out.tar.xz ($(du -sh "$out.tar.xz" | cut -f1)), unpacks to $(basename "$out")/"
echo "bundle: $out ($(du -sh "$out" | cut -f1)); try $out/bin/fibertrain --version"
