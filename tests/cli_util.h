// Running the built `codebook` tool from tests: exit code and output.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/json.h"

namespace cb::test {

struct Result {
  int code;
  std::string out;  // stdout and stderr together
};

// Runs a shell command line; its stdout and stderr together.
inline Result run_command(const std::string& command) {
  std::string cmd = command + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  Result r{-1, ""};
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// Runs the built `codebook` tool with `args`.
inline Result run_tool(const std::string& args) { return run_command(std::string(CB_CODEBOOK_BIN) + " " + args); }

// A fresh, empty directory under the system temp dir, unique per test
// process (cleared first: a process that died with the same pid may have left
// one behind).
inline std::filesystem::path temp_dir(const std::string& name) {
  std::filesystem::path d =
      std::filesystem::temp_directory_path() / ("codebook_cli_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

// A file's whole content ("" when it cannot be read).
inline std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The JSON object `run --json` prints (after any warnings on stderr).
inline Json run_json(const std::string& out) {
  size_t at = out.find("{\"tokens\"");
  EXPECT_NE(at, std::string::npos) << out;
  return json_parse(at == std::string::npos ? "null" : out.substr(at));
}

// The lines of a JSON-lines file (a training run's log.jsonl).
inline std::vector<Json> jsonl_lines(const std::filesystem::path& p) {
  std::vector<Json> out;
  std::istringstream f(file_bytes(p));
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.push_back(json_parse(line));
  return out;
}

}  // namespace cb::test
