// The `nurture` executable. Every command lives in libnurture_cli (pipelines/cli/cli.cpp); this
// file only prepares the environment that LibTorch's libraries read once, while they load, and
// then loads them. That is why it does not link them: a setting made in main() of a program
// linked against LibTorch comes after libgomp has read it.
//
// OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads (LibTorch's intra-op pool) sleep instead of spinning.
// Debian's LibTorch calls OpenBLAS, whose own pthread pool spins on the same cores; with both
// spinning, a small model's training step ran 1.8x slower on 2 cores (docs/benchmarks.md). A value
// the user set is kept.
#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

// In a build with AddressSanitizer (tools/sanitize.sh): no leak check when a nurture process
// exits. LeakSanitizer stops every thread to scan them, and at the exit of a process still
// holding c10d's and OpenMP's threads its tracer itself crashed ("Tracer caught signal 11"), now
// and then, failing a clean run. The suite's own processes, which run the same pipelines
// in-process, keep the check; ASAN_OPTIONS=detect_leaks=1 turns it back on here.
#if defined(__SANITIZE_ADDRESS__)
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }
#endif

int main(int argc, char** argv) {
  setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/0);

  // The library sits beside this executable (both are in the build directory).
  char self[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  std::string dir = n > 0 ? std::string(self, static_cast<size_t>(n)) : std::string(argv[0]);
  dir = dir.substr(0, dir.rfind('/') + 1);
  const std::string library = dir + "libnurture_cli.so";
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (handle == nullptr) {
    std::fprintf(stderr, "nurture: cannot load %s: %s\n", library.c_str(), dlerror());
    return 1;
  }
  auto cli_main = reinterpret_cast<int (*)(int, char**)>(dlsym(handle, "nurture_cli_main"));
  if (cli_main == nullptr) {
    std::fprintf(stderr, "nurture: %s has no nurture_cli_main (a stale build?)\n", library.c_str());
    return 1;
  }
  return cli_main(argc, argv);
}
