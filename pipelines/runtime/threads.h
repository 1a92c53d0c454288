// How many CPU threads a process computes with: `threads:` of a recipe, `nurture bench --threads`.
#pragma once

namespace nurture {

// Sizes LibTorch's intra-op thread pool and OpenBLAS's own (which ignores LibTorch's setting).
void set_cpu_threads(int threads);
// What `threads: auto` means for this process: the cores it is bound to (srun --cpu-bind,
// taskset), or else the machine's cores shared among the processes of this node.
int default_cpu_threads();

}  // namespace nurture
