// The single-process communicator and the choice of communicator from the
// launcher's environment; see collective.h.
#include "train/collective.h"

#include <cstdlib>
#include <memory>

#include "support/error.h"
#ifdef CB_WITH_MPI
#include "train/collective_mpi.h"
#endif

namespace cb {
namespace {

// One process: the sums and broadcasts of one rank are the identity.
class SingleProcess : public Collective {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_size() const override { return 1; }
  void allreduce_sum(std::span<float>, const std::string&) override {}
  void allreduce_sum(std::span<double>, const std::string&) override {}
  void allreduce_sum(std::span<int64_t>, const std::string&) override {}
  void broadcast(std::span<std::byte>, const std::string&) override {}
  void barrier(const std::string&) override {}
};

// The job size a launcher announces, or 0 when none started this process.
// Open MPI sets OMPI_COMM_WORLD_SIZE, MPICH's Hydra PMI_SIZE; PMIx launchers
// (srun, prun) only PMIX_RANK, whose size MPI_Init finds out (-1: unknown).
int launcher_size() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* v = std::getenv(var)) return std::atoi(v);
  return std::getenv("PMIX_RANK") ? -1 : 0;
}

std::unique_ptr<Collective>& world_slot() {
  static std::unique_ptr<Collective> world;
  return world;
}

}  // namespace

double collective_timeout_seconds() {
  const char* v = std::getenv("CODEBOOK_COLLECTIVE_TIMEOUT");
  if (!v || !*v) return 120.0;
  char* end = nullptr;
  double s = std::strtod(v, &end);
  CB_CHECK(end && *end == 0 && s > 0 && s < 1e9,
           "CODEBOOK_COLLECTIVE_TIMEOUT='" << v << "': expected a positive number of seconds");
  return s;
}

Collective& world_collective() {
  std::unique_ptr<Collective>& world = world_slot();
  if (world) return *world;
  int size = launcher_size();
  if (size == 0 || size == 1) {
    world = std::make_unique<SingleProcess>();
  } else {
#ifdef CB_WITH_MPI
    world = make_mpi_collective(collective_timeout_seconds());
#else
    world = std::make_unique<SingleProcess>();
    CB_FAIL("started by an MPI launcher as one of "
            << size << " processes, but this codebook was built without MPI: install libopenmpi-dev "
            << "(scripts/setup.sh) and rebuild, or run it without mpirun");
#endif
  }
  return *world;
}

std::string rank_prefix() {
  const std::unique_ptr<Collective>& world = world_slot();
  if (!world || !world->distributed()) return "";
  return "rank " + std::to_string(world->rank()) + " of " + std::to_string(world->size()) + ": ";
}

void abort_job(int code) {
  const std::unique_ptr<Collective>& world = world_slot();
  if (!world || !world->distributed()) return;
#ifdef CB_WITH_MPI
  mpi_abort(code);
#endif
}

}  // namespace cb
