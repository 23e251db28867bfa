// The MPI communicator: non-blocking collectives on MPI_COMM_WORLD, polled
// with MPI_Test until they complete or the deadline passes.
//
// To name the ranks a timed-out collective waits for, each collective is
// announced: a rank entering its n-th collective sends n to every other rank
// (a small point-to-point message on its own tag) and listens for theirs. A
// rank still waiting at the deadline names the ranks whose announcement has
// not come. (N - 1 eight-byte messages per collective and rank: nothing beside
// a step's gradients, and fine for the tens of ranks of a CPU job.)
#include "train/collective_mpi.h"

#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <sstream>
#include <thread>
#include <vector>

#include "support/error.h"

namespace cb {
namespace {

constexpr int kAnnounceTag = 7101;
// MPI counts are ints: longer buffers go as several collectives.
constexpr size_t kMaxCount = size_t(1) << 30;

class MpiCollective : public Collective {
 public:
  explicit MpiCollective(double timeout_seconds) : timeout_(timeout_seconds) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      // Only the main thread calls MPI (thread-pool helpers never do).
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    }
    // Errors come back as codes (checked below), not as MPI's default abort.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
    MPI_Comm_size(local, &local_size_);
    MPI_Comm_free(&local);
  }
  ~MpiCollective() override { MPI_Finalize(); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_size() const override { return local_size_; }

  void allreduce_sum(std::span<float> data, const std::string& what) override {
    allreduce(data.data(), data.size(), MPI_FLOAT, what);
  }
  void allreduce_sum(std::span<double> data, const std::string& what) override {
    allreduce(data.data(), data.size(), MPI_DOUBLE, what);
  }
  void allreduce_sum(std::span<int64_t> data, const std::string& what) override {
    allreduce(data.data(), data.size(), MPI_INT64_T, what);
  }

  void broadcast(std::span<std::byte> data, const std::string& what) override {
    for (size_t at = 0; at < data.size() || at == 0; at += kMaxCount) {
      size_t n = std::min(kMaxCount, data.size() - at);
      MPI_Request req;
      check(MPI_Ibcast(data.data() + at, int(n), MPI_BYTE, 0, MPI_COMM_WORLD, &req), "broadcast", what);
      complete(req, "broadcast", what);
      if (data.empty()) break;
    }
  }

  void barrier(const std::string& what) override {
    MPI_Request req;
    check(MPI_Ibarrier(MPI_COMM_WORLD, &req), "barrier", what);
    complete(req, "barrier", what);
  }

 private:
  template <typename T>
  void allreduce(T* data, size_t count, MPI_Datatype type, const std::string& what) {
    for (size_t at = 0; at < count || at == 0; at += kMaxCount) {
      size_t n = std::min(kMaxCount, count - at);
      MPI_Request req;
      check(MPI_Iallreduce(MPI_IN_PLACE, data + at, int(n), type, MPI_SUM, MPI_COMM_WORLD, &req), "allreduce", what);
      complete(req, "allreduce", what);
      if (count == 0) break;
    }
  }

  void check(int rc, const char* kind, const std::string& what) const {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    CB_FAIL(kind << " '" << what << "' failed: " << std::string(text, size_t(len)));
  }

  // Announces the collective, then polls it (and the others' announcements)
  // until it completes or the deadline passes.
  void complete(MPI_Request& req, const char* kind, const std::string& what) {
    using Clock = std::chrono::steady_clock;
    ++sequence_;
    std::vector<MPI_Request> sends, recvs(size_t(size_), MPI_REQUEST_NULL);
    std::vector<uint64_t> heard(size_t(size_), 0);
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      MPI_Irecv(&heard[size_t(peer)], 1, MPI_UINT64_T, peer, kAnnounceTag, MPI_COMM_WORLD, &recvs[size_t(peer)]);
      sends.emplace_back();
      MPI_Isend(&sequence_, 1, MPI_UINT64_T, peer, kAnnounceTag, MPI_COMM_WORLD, &sends.back());
    }
    auto start = Clock::now();
    for (int polls = 0;; ++polls) {
      int done = 0;
      check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), kind, what);
      if (done) break;
      double waited = std::chrono::duration<double>(Clock::now() - start).count();
      if (waited > timeout_) timed_out(recvs, kind, what);
      // Spin briefly (a step's collectives are usually quick), then sleep a
      // little between polls so a long wait leaves the cores to the others.
      if (polls > 1000) std::this_thread::sleep_for(std::chrono::microseconds(polls > 20000 ? 1000 : 50));
    }
    // Every rank entered the collective, so every announcement was sent.
    MPI_Waitall(int(recvs.size()), recvs.data(), MPI_STATUSES_IGNORE);
    MPI_Waitall(int(sends.size()), sends.data(), MPI_STATUSES_IGNORE);
  }

  [[noreturn]] void timed_out(std::vector<MPI_Request>& recvs, const char* kind, const std::string& what) {
    std::vector<int> missing;
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      int arrived = 0;
      MPI_Test(&recvs[size_t(peer)], &arrived, MPI_STATUS_IGNORE);
      if (!arrived) missing.push_back(peer);
    }
    std::ostringstream os;
    os << kind << " '" << what << "' (collective #" << sequence_ << ") did not complete within " << timeout_
       << " s (CODEBOOK_COLLECTIVE_TIMEOUT): ";
    if (missing.empty()) {
      os << "every rank reached it, but it did not finish (a rank stopped inside it, or the network failed)";
    } else {
      os << (missing.size() == 1 ? "rank " : "ranks ");
      for (size_t i = 0; i < missing.size(); ++i) os << (i ? ", " : "") << missing[i];
      os << (missing.size() == 1 ? " has" : " have") << " not reached it (crashed, stopped or stuck)";
    }
    os << "; stopping the job";
    throw Error(os.str());
  }

  int rank_ = 0, size_ = 1, local_size_ = 1;
  double timeout_;
  uint64_t sequence_ = 0;
};

}  // namespace

std::unique_ptr<Collective> make_mpi_collective(double timeout_seconds) {
  return std::make_unique<MpiCollective>(timeout_seconds);
}

void mpi_abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  _exit(code);  // MPI_Abort does not return; this is for the compiler
}

}  // namespace cb
