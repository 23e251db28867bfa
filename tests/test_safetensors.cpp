// Tests of the .safetensors reader and writer (frontend/safetensors.h): the
// exact bytes of a small file, round trips of every dtype, zero-copy views,
// F16/BF16/F64 -> f32, the committed Hugging Face files, and one test per
// header validation rule with the error it must give.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "frontend/safetensors.h"
#include "support/error.h"
#include "support/json.h"

using namespace cb;
namespace fs = std::filesystem;

namespace {

class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("codebook_safetensors_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A file with the given 8-byte length field, header text and data bytes.
  std::string raw_file(uint64_t header_len, const std::string& header, const std::string& data) {
    std::string bytes(reinterpret_cast<const char*>(&header_len), 8);
    bytes += header + data;
    const std::string p = path("raw" + std::to_string(++counter_) + ".safetensors");
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  std::string file(const std::string& header, const std::string& data) { return raw_file(header.size(), header, data); }

  // The message of the cb::Error that opening `p` throws ("" if none).
  static std::string open_error(const std::string& p) {
    try {
      SafetensorsFile::open(p);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  fs::path dir_;
  int counter_ = 0;
};

#define EXPECT_OPEN_ERROR(file_path, text)                                                     \
  do {                                                                                         \
    const std::string p_ = file_path;                                                          \
    const std::string msg_ = open_error(p_);                                                   \
    EXPECT_NE(msg_.find(text), std::string::npos) << "expected '" << text << "' in: " << msg_; \
    EXPECT_NE(msg_.find(p_), std::string::npos) << "the error must name the file: " << msg_;   \
  } while (0)

TEST_F(Safetensors, WritesTheExactFormat) {
  const std::string bytes =
      safetensors_serialize({{"a", Tensor::from_vector<float>({1.0f, -2.0f}, {2})}}, {{"format", "pt"}});
  const std::string header = R"({"__metadata__":{"format":"pt"},"a":{"data_offsets":[0,8],"dtype":"F32","shape":[2]}})";
  const std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  std::string expected(8, '\0');
  const uint64_t n = padded.size();
  std::memcpy(expected.data(), &n, 8);
  expected += padded;
  const float values[2] = {1.0f, -2.0f};
  expected.append(reinterpret_cast<const char*>(values), 8);
  EXPECT_EQ(bytes, expected);
  EXPECT_EQ((8 + padded.size()) % 8, 0u);
}

TEST_F(Safetensors, RoundTripsEveryDtype) {
  NamedTensors tensors;
  tensors.emplace_back("f32", Tensor::from_vector<float>({1.5f, -0.25f, 3e-7f, 1e30f, 0.0f, -7.0f}, {2, 3}));
  tensors.emplace_back("f64", Tensor::from_vector<double>({1.0 / 3.0, -2.0}, {2}));
  tensors.emplace_back("f16",
                       Tensor::from_vector<Half>({Half{float_to_half(1.5f)}, Half{float_to_half(-65504.0f)}}, {2}));
  tensors.emplace_back("bf16", Tensor::from_vector<BFloat16>({BFloat16{float_to_bf16(3.0f)}}, {1, 1}));
  tensors.emplace_back("i64", Tensor::from_vector<int64_t>({INT64_MIN, 5, INT64_MAX}, {3}));
  tensors.emplace_back("i32", Tensor::from_vector<int32_t>({-3, 4}, {2}));
  tensors.emplace_back("i16", Tensor::from_vector<int16_t>({-300}, {1}));
  tensors.emplace_back("i8", Tensor::from_vector<int8_t>({-128, 127, 0}, {3}));
  tensors.emplace_back("u8", Tensor::from_vector<uint8_t>({255, 1}, {2}));
  tensors.emplace_back("u16", Tensor::from_vector<uint16_t>({65535}, {1}));
  tensors.emplace_back("u32", Tensor::from_vector<uint32_t>({4000000000u}, {1}));
  tensors.emplace_back("u64", Tensor::from_vector<uint64_t>({UINT64_MAX}, {1}));
  tensors.emplace_back("bool", Tensor::from_vector<bool>({true, false, true}, {3}));
  tensors.emplace_back("scalar", Tensor::scalar<float>(42.0f));
  tensors.emplace_back("empty", Tensor::empty(DType::f32, {0, 3}));
  safetensors_write(path("all.safetensors"), tensors, {{"format", "pt"}, {"step", "17"}});

  auto f = SafetensorsFile::open(path("all.safetensors"));
  EXPECT_EQ(f->metadata().at("step"), "17");
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_EQ(f->entries().size(), tensors.size());
  for (size_t i = 1; i < f->entries().size(); ++i) EXPECT_LT(f->entries()[i - 1].name, f->entries()[i].name);
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    const SafetensorsEntry* e = f->find(name);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->dtype, t.dtype());
    EXPECT_EQ(e->dtype_name, safetensors_dtype_name(t.dtype()));
    EXPECT_EQ(e->begin % dtype_size(t.dtype()), 0u) << "tensors must be aligned to their element size";
    const Tensor back = f->tensor(name);
    EXPECT_EQ(back.dims(), t.dims());
    EXPECT_TRUE(back.bitwise_equal(t));
  }
  EXPECT_EQ(f->find("nope"), nullptr);
  EXPECT_THROW(f->tensor("nope"), Error);
}

TEST_F(Safetensors, F32TensorsAreViewsOfTheMapping) {
  safetensors_write(path("v.safetensors"), {{"w", Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2})}});
  auto f = SafetensorsFile::open(path("v.safetensors"));
  const Tensor a = f->tensor("w"), b = f->tensor_f32("w");
  EXPECT_EQ(a.raw(), b.raw()) << "two reads of an F32 tensor must share the mapped bytes, not copy them";
  f.reset();  // the tensors keep the mapping alive
  EXPECT_EQ(a.data<float>()[3], 4.0f);
}

TEST_F(Safetensors, ConvertsHalfBFloatAndDoubleToF32) {
  const std::vector<float> values = {1.5f, -2.0f, 0.0999755859375f, 65504.0f, -0.0f};
  std::vector<Half> h;
  std::vector<BFloat16> bf;
  std::vector<double> d;
  for (float v : values) {
    h.push_back(Half{float_to_half(v)});
    bf.push_back(BFloat16{float_to_bf16(v)});
    d.push_back(double(v));
  }
  d.back() = 0.1;  // rounds to 0.1f
  safetensors_write(path("h.safetensors"), {{"h", Tensor::from_vector(h, {5})},
                                            {"bf", Tensor::from_vector(bf, {5})},
                                            {"d", Tensor::from_vector(d, {5})},
                                            {"i", Tensor::from_vector<int64_t>({1}, {1})}});
  auto f = SafetensorsFile::open(path("h.safetensors"));
  const Tensor th = f->tensor_f32("h"), tbf = f->tensor_f32("bf"), td = f->tensor_f32("d");
  ASSERT_EQ(th.dtype(), DType::f32);
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(th.data<float>()[i], values[i]) << i;  // all exactly representable in f16
    EXPECT_EQ(tbf.data<float>()[i], bf16_to_float(float_to_bf16(values[i]))) << i;
    EXPECT_EQ(td.data<float>()[i], i + 1 < values.size() ? values[i] : 0.1f) << i;
  }
  EXPECT_EQ(tbf.data<float>()[0], 1.5f);
  try {
    f->tensor_f32("i");
    FAIL() << "an I64 tensor is not floating point";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'i' has dtype I64"), std::string::npos) << e.what();
  }
}

TEST_F(Safetensors, CopiesMisalignedTensorsAndNormalisesBools) {
  // A 1-byte U8 then an F32 starting at data offset 1, and a BOOL byte of 2.
  const std::string header = R"({"b":{"dtype":"BOOL","shape":[1],"data_offsets":[5,6]},)"
                             R"("f":{"dtype":"F32","shape":[1],"data_offsets":[1,5]},)"
                             R"("u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  const float v = 2.5f;
  std::string data(1, '\x07');
  data.append(reinterpret_cast<const char*>(&v), 4);
  data += '\x02';
  auto f = SafetensorsFile::open(file(padded, data));
  EXPECT_EQ(f->tensor("f").data<float>()[0], 2.5f);
  EXPECT_EQ(f->tensor("u").data<uint8_t>()[0], 7);
  EXPECT_TRUE(f->tensor("b").data<bool>()[0]);
}

TEST_F(Safetensors, ReadsTheCommittedHuggingFaceFile) {
  const std::string p = std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/hf/model.safetensors";
  auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->entries().size(), 28u);  // 12 per layer, 2 embeddings, ln_f (tied lm_head not saved)
  const SafetensorsEntry* wte = f->find("transformer.wte.weight");
  ASSERT_NE(wte, nullptr);
  EXPECT_EQ(wte->dtype_name, "F32");
  EXPECT_EQ(wte->shape, (std::vector<int64_t>{500, 64}));
  const Tensor t = f->tensor("transformer.h.0.ln_1.weight");
  // scripts/make_test_models.py: LayerNorm weights are 1 + N(0, 0.1^2).
  double mean = 0;
  for (int64_t i = 0; i < 64; ++i) mean += t.data<float>()[i] / 64.0;
  EXPECT_NEAR(mean, 1.0, 0.1);
}

TEST_F(Safetensors, AcceptsDtypesItCannotHoldUntilTheyAreRead) {
  auto f = SafetensorsFile::open(file(R"({"q":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", "ab"));
  EXPECT_EQ(f->find("q")->dtype, DType::undefined);
  try {
    f->tensor("q");
    FAIL() << "F8 has no codebook dtype";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dtype F8_E4M3"), std::string::npos) << e.what();
  }
}

TEST_F(Safetensors, ValidatesTheHeader) {
  const std::string t1 = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string eight(8, 'x');
  {
    const std::string p = path("short.safetensors");
    std::ofstream(p, std::ios::binary) << "abc";
    EXPECT_OPEN_ERROR(p, "too small");
  }
  EXPECT_OPEN_ERROR(raw_file(1000, "{}", ""), "runs past the end");
  EXPECT_OPEN_ERROR(raw_file(200'000'000, "{}", ""), "100 MB");
  EXPECT_OPEN_ERROR(file("[1,2]", ""), "does not start with '{'");
  EXPECT_OPEN_ERROR(file("{\"a\":", ""), "safetensors header");
  EXPECT_OPEN_ERROR(file(R"({"a":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}})", "xxxx"), "unknown dtype 'F7'");
  EXPECT_OPEN_ERROR(file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "xxxx"), "non-negative integer");
  EXPECT_OPEN_ERROR(file(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", "xxxx"),
                    "non-negative integer");
  EXPECT_OPEN_ERROR(file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight), "needs 12");
  EXPECT_OPEN_ERROR(file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", eight), "end before");
  EXPECT_OPEN_ERROR(file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", eight), "[begin, end]");
  EXPECT_OPEN_ERROR(file(R"({"a":{"dtype":"F32","shape":[2]}})", eight), "no 'data_offsets'");
  EXPECT_OPEN_ERROR(file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", eight),
                    "unknown field 'x'");
  EXPECT_OPEN_ERROR(file(R"({"a":[1]})", eight), "tensor 'a' must be an object");
  EXPECT_OPEN_ERROR(file(R"({"__metadata__":{"k":1},)" + t1 + "}", eight), "__metadata__ 'k' must be a string");
  // Tiling: a gap, an overlap, trailing bytes, missing bytes.
  EXPECT_OPEN_ERROR(file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight),
                    "begins at data offset 4");
  EXPECT_OPEN_ERROR(file("{" + t1 + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight), "overlap");
  EXPECT_OPEN_ERROR(file("{" + t1 + "}", eight + "yy"), "cover 8 bytes of data but the file holds 10");
  EXPECT_OPEN_ERROR(file("{" + t1 + "}", "xxxx"), "cover 8 bytes of data but the file holds 4");
  // Header padding with spaces and an empty header are fine.
  EXPECT_NO_THROW(SafetensorsFile::open(file("{" + t1 + "}   ", eight)));
  EXPECT_EQ(SafetensorsFile::open(file("{}", ""))->entries().size(), 0u);
  EXPECT_OPEN_ERROR(path("does_not_exist.safetensors"), "cannot open");
}

TEST_F(Safetensors, WriterRejectsBadNames) {
  const Tensor t = Tensor::scalar<float>(1.0f);
  EXPECT_THROW(safetensors_serialize({{"a", t}, {"a", t}}), Error);
  EXPECT_THROW(safetensors_serialize({{"__metadata__", t}}), Error);
  EXPECT_THROW(safetensors_serialize({{"", t}}), Error);
  EXPECT_THROW(safetensors_serialize({{"u", Tensor()}}), Error);
}

TEST_F(Safetensors, WriteReplacesAnExistingFileAtomically) {
  const std::string p = path("w.safetensors");
  safetensors_write(p, {{"a", Tensor::from_vector<float>({1}, {1})}});
  safetensors_write(p, {{"b", Tensor::from_vector<float>({2, 3}, {2})}});
  auto f = SafetensorsFile::open(p);
  ASSERT_EQ(f->entries().size(), 1u);
  EXPECT_EQ(f->entries()[0].name, "b");
  for (const auto& entry : fs::directory_iterator(dir_))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << "left a temporary file";
}

}  // namespace
