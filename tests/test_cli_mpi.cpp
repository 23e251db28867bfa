// Data-parallel `codebook train` and `cache build` under `mpirun -np 2`
// (docs/scale.md) against one process: the same loss curve and codes, resume
// with another number of ranks, a stopped or killed rank ending the job with
// a clear error instead of a hang, and the sharded cache equal to the
// one-process cache byte for byte. Skipped when mpirun is not installed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <future>
#include <regex>
#include <thread>

#include "support/json.h"
#include "tests/cache_test_util.h"
#include "tests/cli_util.h"

namespace cb {
namespace {

namespace fs = std::filesystem;
using test::file_bytes;
using test::Result;
using test::run_command;
using test::run_tool;
using test::temp_dir;

const std::string kConfig = std::string(CB_SOURCE_DIR) + "/configs/test_fsm.yaml";
// Short runs that still cross a k-means initialisation, dead-code
// replacements (every 2 steps), a checkpoint and an evaluation.
const std::string kShortRun =
    " training_args.max_steps=8 training_args.logging_steps=1 training_args.save_steps=4 "
    "training_args.eval_steps=8 codebook_args.kmeans_init=true codebook_args.kmeans_init_examples=16 --progress off";

// mpirun, and a tool built with MPI (the sanitizer build has none).
bool have_mpirun() {
#ifdef CB_TOOL_WITH_MPI
  return run_command("command -v mpirun").code == 0;
#else
  return false;
#endif
}

// `mpirun -np N` with the tool (as root too: containers), `env` first.
std::string mpirun(int ranks, const std::string& args, const std::string& env = "") {
  std::string root = getuid() == 0 ? " --allow-run-as-root" : "";
  return "env " + env + " mpirun --oversubscribe" + root + " -np " + std::to_string(ranks) + " " + CB_CODEBOOK_BIN +
         " " + args;
}

std::vector<Json> train_lines(const fs::path& run) {
  std::vector<Json> out;
  for (Json& l : test::jsonl_lines(run / "log.jsonl"))
    if (l.find("loss")) out.push_back(l);
  return out;
}

// Equal within float rounding: the ranks sum their halves in another order.
void expect_same_curve(const std::vector<Json>& a, const std::vector<Json>& b) {
  ASSERT_EQ(a.size(), b.size());
  ASSERT_GE(a.size(), 8u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].at("step").as_int(), b[i].at("step").as_int());
    for (const char* key : {"loss", "accuracy", "grad_norm"}) {
      double x = a[i].at(key).as_double(), y = b[i].at(key).as_double();
      EXPECT_NEAR(x, y, 1e-4 * std::max(1.0, std::abs(x))) << key << " at line " << i;
    }
    EXPECT_EQ(a[i].at("dead_code_fraction").dump(), b[i].at("dead_code_fraction").dump()) << "line " << i;
  }
}

// The codes the trained model picks for a fixed input, at every site.
std::string codes_of(const fs::path& model) {
  Result r = run_tool("run " + model.string() + " --tokens 2,0,1,1,0,1,0,0,1,1,1,0 --show-codes all --json");
  EXPECT_EQ(r.code, 0) << r.out;
  return test::run_json(r.out).at("codes").dump();
}

TEST(MpiTrain, TwoRanksGiveTheOneProcessLossCurveAndCodes) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (openmpi-bin)";
  fs::path dir = temp_dir("mpi_curve");
  Result one = run_tool("train " + kConfig + " --output " + (dir / "one").string() + kShortRun);
  ASSERT_EQ(one.code, 0) << one.out;
  Result two = run_command(mpirun(2, "train " + kConfig + " --output " + (dir / "two").string() + kShortRun));
  ASSERT_EQ(two.code, 0) << two.out;
  EXPECT_NE(two.out.find("data-parallel: 2 ranks, 4 rows of each batch of 8"), std::string::npos) << two.out;
  expect_same_curve(train_lines(dir / "one"), train_lines(dir / "two"));
  // The evaluation too (sharded over the ranks).
  std::vector<Json> lines = test::jsonl_lines(dir / "two" / "log.jsonl");
  ASSERT_TRUE(lines.back().find("eval_loss")) << lines.back().dump();
  EXPECT_NEAR(lines.back().at("eval_loss").as_double(),
              test::jsonl_lines(dir / "one" / "log.jsonl").back().at("eval_loss").as_double(), 1e-4);
  // Rank 0 alone wrote: one log line per step, complete checkpoints.
  EXPECT_EQ(train_lines(dir / "two").size(), 8u);
  EXPECT_TRUE(fs::exists(dir / "two" / "checkpoint-4" / "trainer_state.json"));
  EXPECT_TRUE(fs::exists(dir / "two" / "checkpoint-8" / "state.safetensors"));
  // The same codes after k-means initialisation and 8 steps.
  EXPECT_EQ(codes_of(dir / "one" / "model.onnx"), codes_of(dir / "two" / "model.onnx"));
  fs::remove_all(dir);
}

TEST(MpiTrain, ResumesWithAnotherNumberOfRanks) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (openmpi-bin)";
  fs::path dir = temp_dir("mpi_resume");
  Result one = run_tool("train " + kConfig + " --output " + (dir / "one").string() + kShortRun);
  ASSERT_EQ(one.code, 0) << one.out;
  // Two ranks to step 4, one process from there; and the other way round.
  Result first = run_command(
      mpirun(2, "train " + kConfig + " --output " + (dir / "two_one").string() + kShortRun + " --stop-at 4"));
  ASSERT_EQ(first.code, 0) << first.out;
  Result rest = run_tool("train --resume " + (dir / "two_one").string() + " --progress off");
  ASSERT_EQ(rest.code, 0) << rest.out;
  expect_same_curve(train_lines(dir / "one"), train_lines(dir / "two_one"));
  ASSERT_EQ(run_tool("train " + kConfig + " --output " + (dir / "one_two").string() + kShortRun + " --stop-at 4").code,
            0);
  Result resumed = run_command(mpirun(2, "train --resume " + (dir / "one_two").string() + " --progress off"));
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("resumed from"), std::string::npos) << resumed.out;
  expect_same_curve(train_lines(dir / "one"), train_lines(dir / "one_two"));
  fs::remove_all(dir);
}

TEST(MpiTrain, BatchThatDoesNotSplitIsAClearError) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (openmpi-bin)";
  fs::path dir = temp_dir("mpi_split");
  Result r = run_command(mpirun(3, "train " + kConfig + " --output " + (dir / "run").string() + kShortRun));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("the batch of 8 (the global batch) does not split evenly over 3 ranks"), std::string::npos)
      << r.out;
  fs::remove_all(dir);
}

// The processes of the job whose environment holds CB_TEST_JOB=tag: rank
// `rank`'s (OMPI_COMM_WORLD_RANK), or with rank -1 all of them (mpirun's too).
std::vector<pid_t> job_pids(const std::string& tag, int rank) {
  std::vector<pid_t> out;
  for (auto& e : fs::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string env = file_bytes(e.path() / "environ");
    for (char& c : env)
      if (c == 0) c = '\n';
    env = "\n" + env;
    if (env.find("\nCB_TEST_JOB=" + tag + "\n") == std::string::npos) continue;
    if (rank < 0 || env.find("\nOMPI_COMM_WORLD_RANK=" + std::to_string(rank) + "\n") != std::string::npos)
      out.push_back(pid_t(std::stol(name)));
  }
  return out;
}

// A long run under mpirun with a 3 s collective deadline; once it has logged
// a few steps, rank 1 gets `signal`. Returns the job's result and how long
// it took to end after the signal.
std::pair<Result, double> signal_rank_one(const std::string& test, int signal) {
  fs::path dir = temp_dir(test);
  std::string tag = test + std::to_string(getpid());
  auto job = std::async(std::launch::async, [&] {
    return run_command(mpirun(2,
                              "train " + kConfig + " --output " + (dir / "run").string() +
                                  " training_args.max_steps=100000 training_args.logging_steps=1 --no-checkpoint "
                                  "--progress off",
                              "CODEBOOK_COLLECTIVE_TIMEOUT=3 CB_TEST_JOB=" + tag));
  });
  pid_t pid = -1;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (job.wait_for(std::chrono::milliseconds(50)) == std::future_status::ready) break;
    std::vector<pid_t> rank1 = job_pids(tag, 1);
    if (train_lines(dir / "run").size() >= 3 && rank1.size() == 1) {
      pid = rank1[0];
      break;
    }
  }
  EXPECT_GT(pid, 0) << "rank 1 never got going";
  if (pid > 0) kill(pid, signal);
  auto t0 = std::chrono::steady_clock::now();
  bool ended = job.wait_for(std::chrono::seconds(pid > 0 ? 60 : 0)) == std::future_status::ready;
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(ended) << "the job hung";
  if (!ended)  // whatever is left of it, so that the test ends
    for (pid_t p : job_pids(tag, -1)) kill(p, SIGKILL);
  Result r = job.get();
  fs::remove_all(dir);
  return {r, seconds};
}

TEST(MpiTrain, StoppedRankEndsTheJobWithAClearError) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (openmpi-bin)";
  auto [r, seconds] = signal_rank_one("mpi_stop", SIGSTOP);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_LT(seconds, 30);
  // Rank 0 names the collective it waited in and the rank that never came
  // (unless rank 1 was stopped inside the collective: then all had come).
  std::regex error(R"(error: rank 0 of 2: allreduce '[^']+' \(collective #\d+\) did not complete )"
                   R"(within 3 s \(CODEBOOK_COLLECTIVE_TIMEOUT\): )");
  EXPECT_TRUE(std::regex_search(r.out, error)) << r.out;
  EXPECT_TRUE(r.out.find("rank 1 has not reached it") != std::string::npos ||
              r.out.find("every rank reached it") != std::string::npos)
      << r.out;
}

TEST(MpiTrain, KilledRankEndsTheJob) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (openmpi-bin)";
  auto [r, seconds] = signal_rank_one("mpi_kill", SIGKILL);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_LT(seconds, 30);
  EXPECT_NE(r.out.find("signal 9"), std::string::npos) << r.out;  // mpirun's report of rank 1's death
}

TEST(MpiTrain, ToolWithoutMpiRefusesToRunAsOneOfSeveralRanks) {
#ifdef CB_TOOL_WITH_MPI
  GTEST_SKIP() << "this tool is built with MPI";
#else
  if (run_command("command -v mpirun").code != 0) GTEST_SKIP() << "mpirun not installed (openmpi-bin)";
  fs::path dir = temp_dir("mpi_none");
  Result r = run_command(mpirun(2, "train " + kConfig + " --output " + (dir / "run").string() + kShortRun));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("as one of 2 processes, but this codebook was built without MPI"), std::string::npos) << r.out;
  fs::remove_all(dir);
#endif
}

TEST(MpiCache, BuildUnderMpirunEqualsTheOneProcessCache) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (openmpi-bin)";
  fs::path dir = temp_dir("mpi_cache");
  std::string model = (dir / "cb.onnx").string();
  ASSERT_EQ(test::make_tiny_cache_inputs(dir, model).code, 0);
  auto build = [&](const std::string& out, int threads) {
    return "cache build " + model + " -o " + (dir / out).string() + " --data " + (dir / "tokens.npy").string() +
           " --tokenizer " + CB_SOURCE_DIR + "/../shared/data/gpt2-bpe --block-size 16 --batch-size 3 --progress off" +
           " --threads " + std::to_string(threads);
  };
  // --threads is per machine: 2 ranks of 1 thread each, as the one process
  // (the cache records the threads).
  Result one = run_tool(build("one", 1));
  ASSERT_EQ(one.code, 0) << one.out;
  Result two = run_command(mpirun(2, build("two", 2)));
  ASSERT_EQ(two.code, 0) << two.out;
  EXPECT_NE(two.out.find("1200 tokens in 30 documents"), std::string::npos) << two.out;
  EXPECT_TRUE(test::same_files(dir / "one", dir / "two"));
  for (auto& e : fs::directory_iterator(dir))  // the shards are gone
    EXPECT_EQ(e.path().filename().string().find("two.rank-"), std::string::npos) << e.path();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace cb
