// The launch environment: torchrun's, Slurm's and Open MPI's variables read into one world, and
// bad values named by their variable. (Runs on several processes: tests/integration/distributed_test.cpp.)
#include <gmock/gmock.h>

#include "pipelines/runtime/distributed.h"
#include "tests/test_util.h"

namespace nurture {
namespace {

using ::testing::HasSubstr;
using namespace nurture::testing;

TEST(DistributedEnvironment, ReadsTorchrunSlurmAndOpenMpi) {
  auto e = dist::environment_from({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                                   {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "29600"}});
  EXPECT_EQ(e.source, "torchrun");
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 2);
  EXPECT_EQ(e.master_addr, "node0");
  EXPECT_EQ(e.master_port, 29600);

  e = dist::environment_from({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"},
                              {"SLURM_JOB_NUM_NODES", "2"}, {"SLURM_JOB_NODELIST", "gpu[07-08]"}});
  EXPECT_EQ(e.source, "slurm");
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_world_size, 4);
  EXPECT_EQ(e.master_addr, "gpu07");
  EXPECT_EQ(e.master_port, 29500);
  // A Slurm job of one task is a single process, whatever else it says.
  EXPECT_EQ(dist::environment_from({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}}).world_size, 1);

  e = dist::environment_from({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "3"},
                              {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "1"},
                              {"MASTER_ADDR", "10.0.0.1"}});
  EXPECT_EQ(e.source, "openmpi");
  EXPECT_EQ(e.rank, 2);
  EXPECT_EQ(e.master_addr, "10.0.0.1");

  EXPECT_EQ(dist::environment_from({}).world_size, 1);
  EXPECT_EQ(dist::first_slurm_host("gpu[07-09,12]-ib,cpu3"), "gpu07-ib");
  EXPECT_EQ(dist::first_slurm_host("cpu3,cpu4"), "cpu3");
  EXPECT_EQ(dist::first_slurm_host("n[1,4]"), "n1");
}

TEST(DistributedEnvironment, BadValuesNameTheVariable) {
  auto error_of = [](const std::map<std::string, std::string>& env) {
    try {
      dist::environment_from(env);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error_of({{"RANK", "x"}, {"WORLD_SIZE", "2"}}), "RANK=x: expected a whole number >= 0");
  EXPECT_EQ(error_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}}),
            "rank 2 (from torchrun's variables) is not below the world size 2");
  EXPECT_EQ(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "99999"}}), "MASTER_PORT=99999: not a port");
  EXPECT_THAT(error_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_JOB_NODELIST", "n[1-2"}}),
              HasSubstr("SLURM_JOB_NODELIST: unbalanced '['"));
  // The runner reports it like a recipe mistake: exit 2, before anything runs.
  auto r = run_shell("RANK=1 WORLD_SIZE=1 '" + nurture_binary().string() + "' run recipes/quickstart.yaml --dry-run");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("error: environment: rank 1 (from torchrun's variables) is not below the world size 1"));
}

}  // namespace
}  // namespace nurture
