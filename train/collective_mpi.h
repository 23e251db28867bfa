// The MPI communicator (train/collective.h), built when CMake finds MPI
// (CB_WITH_MPI). Only world_collective() makes one.
#pragma once
#include <memory>

#include "train/collective.h"

namespace cb {

// Calls MPI_Init; the communicator calls MPI_Finalize when destroyed.
std::unique_ptr<Collective> make_mpi_collective(double timeout_seconds);

// MPI_Abort on MPI_COMM_WORLD.
[[noreturn]] void mpi_abort(int code);

}  // namespace cb
