// The communicator of data-parallel training: which process this is (rank)
// among how many (size), and the collectives the trainer needs. One process
// has a trivial implementation; under mpirun (Open MPI, MPICH) the MPI one
// (train/collective_mpi.cpp, when built with MPI).
//
// Which one a process uses is decided at run time from the launcher's
// environment (world_collective): a plain `codebook train` never calls
// MPI_Init, and the same binary works under `mpirun -np N`.
//
// No hang: every MPI collective is non-blocking and polled with a deadline
// (CODEBOOK_COLLECTIVE_TIMEOUT seconds, default 120). A rank that does not
// reach a collective in time (crashed, stopped, stuck) makes the others throw
// a cb::Error naming the collective and the ranks not heard from; the tool's
// error path then stops the whole job (abort_job).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace cb {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Ranks of the job on this machine (for the default thread count).
  virtual int local_size() const = 0;
  bool is_root() const { return rank() == 0; }
  bool distributed() const { return size() > 1; }

  // Element-wise sums over the ranks, in place; every rank gets the same
  // result. `what` names the collective in errors ("gradients of step 12").
  virtual void allreduce_sum(std::span<float> data, const std::string& what) = 0;
  virtual void allreduce_sum(std::span<double> data, const std::string& what) = 0;
  virtual void allreduce_sum(std::span<int64_t> data, const std::string& what) = 0;
  // Rank 0's bytes to every rank.
  virtual void broadcast(std::span<std::byte> data, const std::string& what) = 0;
  virtual void barrier(const std::string& what) = 0;
};

// The process's communicator, made on first use: MPI when a launcher started
// this process as one of several ranks, otherwise a single process. Throws
// cb::Error when launched by mpirun but built without MPI.
Collective& world_collective();

// "rank 1 of 4: " once a distributed communicator exists, "" otherwise.
std::string rank_prefix();

// After an error on this rank of a distributed job: stops every rank
// (MPI_Abort) with `code`. Returns when the process is not distributed.
void abort_job(int code);

// The collective deadline in seconds: CODEBOOK_COLLECTIVE_TIMEOUT, default
// 120. Throws cb::Error naming the variable when it is not a positive number.
double collective_timeout_seconds();

}  // namespace cb
