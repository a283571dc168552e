#include "trainer/dataset.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "core/hash.h"

namespace faceid {

namespace fs = std::filesystem;

namespace {

bool IsImageFile(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  static const char* kExts[] = {".jpg", ".jpeg", ".png", ".pgm", ".ppm",
                                ".bmp", ".webp", ".tif", ".tiff"};
  return std::find(std::begin(kExts), std::end(kExts), ext) != std::end(kExts);
}

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError("read error on " + path);
  return ss.str();
}

Status WriteFileAtomic(const fs::path& path, const std::string& bytes) {
  const fs::path tmp = path.string() + ".tmp" +
                       std::to_string(std::hash<std::thread::id>()(std::this_thread::get_id()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    if (!out) return absl::InternalError("cannot write cache file " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return absl::InternalError("cannot rename " + tmp.string() + ": " + ec.message());
  return absl::OkStatus();
}

}  // namespace

StatusOr<DatasetSpec> ParseDatasetSpec(const std::string& text) {
  DatasetSpec spec;
  std::string path = text;
  const std::string suffix = ":crops";
  if (path.size() >= suffix.size() &&
      path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0) {
    spec.crops = true;
    path.resize(path.size() - suffix.size());
  }
  if (path.empty()) return absl::InvalidArgumentError("--data needs a folder, got '" + text + "'");
  std::error_code ec;
  spec.path = fs::absolute(path, ec).lexically_normal().string();
  if (!spec.path.empty() && spec.path.back() == '/' && spec.path.size() > 1) spec.path.pop_back();
  return spec;
}

bool NaturalLess(const std::string& a, const std::string& b) {
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit((unsigned char)a[i]) && std::isdigit((unsigned char)b[j])) {
      std::size_t ei = i, ej = j;
      while (ei < a.size() && std::isdigit((unsigned char)a[ei])) ++ei;
      while (ej < b.size() && std::isdigit((unsigned char)b[ej])) ++ej;
      std::string da = a.substr(i, ei - i), db = b.substr(j, ej - j);
      da.erase(0, std::min(da.find_first_not_of('0'), da.size()));
      db.erase(0, std::min(db.find_first_not_of('0'), db.size()));
      if (da.size() != db.size()) return da.size() < db.size();
      if (da != db) return da < db;
      i = ei;
      j = ej;
      continue;
    }
    if (a[i] != b[j]) return (unsigned char)a[i] < (unsigned char)b[j];
    ++i;
    ++j;
  }
  if ((a.size() - i) != (b.size() - j)) return (a.size() - i) < (b.size() - j);
  return a < b;
}

Status CheckDistinctDatasets(const std::vector<DatasetSpec>& specs) {
  std::vector<std::string> seen;
  for (const DatasetSpec& spec : specs) {
    std::error_code ec;
    const std::string canonical = fs::weakly_canonical(spec.path, ec).string();
    if (std::find(seen.begin(), seen.end(), canonical) != seen.end()) {
      return absl::InvalidArgumentError("--data " + spec.path + " is given twice");
    }
    seen.push_back(canonical);
  }
  return absl::OkStatus();
}

std::vector<std::string> FirstLines(const std::vector<std::string>& items, std::size_t max) {
  std::vector<std::string> lines(items.begin(), items.begin() + std::min(max, items.size()));
  if (items.size() > max)
    lines.push_back("... and " + std::to_string(items.size() - max) + " more");
  return lines;
}

StatusOr<DatasetListing> ListDataset(const DatasetSpec& spec, const ListLimits& limits) {
  std::error_code ec;
  if (!fs::exists(spec.path, ec)) {
    return absl::NotFoundError("dataset folder " + spec.path + " does not exist");
  }
  if (!fs::is_directory(spec.path, ec)) {
    return absl::InvalidArgumentError("dataset " + spec.path +
                                      " is not a folder (expected one sub-folder per person)");
  }
  std::vector<PersonImages> all;
  std::vector<std::string> left_out;  // folders and files that cannot be used, with the reason
  fs::directory_iterator people_it(spec.path, ec);
  if (ec) return absl::InvalidArgumentError("cannot read " + spec.path + ": " + ec.message());
  // The error_code forms throughout: a symlink loop or an unreadable folder is reported, not
  // thrown.
  for (; people_it != fs::directory_iterator(); people_it.increment(ec)) {
    const fs::directory_entry& entry = *people_it;
    std::error_code entry_ec;
    if (!entry.is_directory(entry_ec)) {
      if (entry_ec) left_out.push_back(entry.path().string() + ": " + entry_ec.message());
      continue;
    }
    PersonImages person;
    person.name = entry.path().filename().string();
    std::error_code list_ec;
    fs::directory_iterator files(entry.path(), list_ec);
    std::size_t sub_folders = 0;
    for (; !list_ec && files != fs::directory_iterator(); files.increment(list_ec)) {
      std::error_code file_ec;
      const fs::path& path = files->path();
      if (files->is_regular_file(file_ec)) {
        if (IsImageFile(path)) person.images.push_back(path.string());
      } else if (file_ec) {
        left_out.push_back(path.string() + ": " + file_ec.message());
      } else if (files->is_directory(file_ec)) {
        ++sub_folders;
      }
    }
    if (list_ec) {
      left_out.push_back(person.name + ": cannot read the folder: " + list_ec.message());
      continue;
    }
    if (person.images.empty()) {
      left_out.push_back(person.name + ": no .jpg/.png/.pgm/... images directly inside" +
                         (sub_folders > 0 ? " (sub-folders are not read)" : std::string()));
      continue;
    }
    std::sort(person.images.begin(), person.images.end(), NaturalLess);
    all.push_back(std::move(person));
  }
  if (ec) return absl::InvalidArgumentError("cannot read " + spec.path + ": " + ec.message());
  if (all.empty()) {
    return absl::InvalidArgumentError(
        "dataset " + spec.path +
        " is empty: expected one sub-folder per person holding .jpg/.png/.pgm images");
  }
  std::sort(all.begin(), all.end(), [](const PersonImages& a, const PersonImages& b) {
    return NaturalLess(a.name, b.name);
  });
  DatasetListing listing;
  listing.spec = spec;
  listing.skipped_people = std::move(left_out);
  for (auto& person : all) {
    if (int(person.images.size()) < limits.min_images) {
      listing.skipped_people.push_back(person.name + ": " + std::to_string(person.images.size()) +
                                       " image(s) < --min-images " +
                                       std::to_string(limits.min_images));
      continue;
    }
    if (limits.max_people > 0 && int(listing.people.size()) >= limits.max_people) continue;
    if (limits.max_images_per_person > 0 &&
        int(person.images.size()) > limits.max_images_per_person) {
      person.images.resize(limits.max_images_per_person);
    }
    listing.people.push_back(std::move(person));
  }
  if (listing.people.empty()) {
    return absl::InvalidArgumentError(
        "dataset " + spec.path + ": none of its " + std::to_string(all.size()) +
        " people has at least " + std::to_string(limits.min_images) +
        " images (a class with one image cannot be trained or evaluated; lower --min-images "
        "only for training-only data)");
  }
  return listing;
}

nlohmann::json Split::ToJson() const {
  nlohmann::json datasets = nlohmann::json::array();
  for (const auto& d : this->datasets) {
    datasets.push_back({{"path", d.path},
                        {"crops", d.crops},
                        {"train", d.train},
                        {"val", d.val},
                        {"test", d.test}});
  }
  return {{"seed", seed}, {"datasets", datasets}};
}

StatusOr<Split> Split::FromJson(const nlohmann::json& json) {
  try {
    Split split;
    split.seed = json.at("seed").get<std::uint64_t>();
    for (const auto& d : json.at("datasets")) {
      DatasetSplit ds;
      ds.path = d.at("path").get<std::string>();
      ds.crops = d.at("crops").get<bool>();
      ds.train = d.at("train").get<std::vector<std::string>>();
      ds.val = d.at("val").get<std::vector<std::string>>();
      ds.test = d.at("test").get<std::vector<std::string>>();
      split.datasets.push_back(std::move(ds));
    }
    return split;
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(std::string("malformed split JSON: ") + e.what());
  }
}

StatusOr<Split> SplitIdentities(const std::vector<DatasetListing>& listings,
                                const std::vector<double>& fractions, std::uint64_t seed) {
  if (fractions.size() != 3) {
    return absl::InvalidArgumentError("--split needs three fractions train,val,test");
  }
  double sum = 0;
  for (double f : fractions) {
    if (!(f >= 0)) return absl::InvalidArgumentError("--split fractions must be >= 0");
    sum += f;
  }
  if (sum <= 0) return absl::InvalidArgumentError("--split fractions sum to zero");
  Split split;
  split.seed = seed;
  for (const auto& listing : listings) {
    std::vector<std::string> names;
    for (const auto& p : listing.people) names.push_back(p.name);
    std::mt19937_64 rng(seed);
    std::shuffle(names.begin(), names.end(), rng);
    const int n = int(names.size());
    int n_val = int(std::lround(n * fractions[1] / sum));
    int n_test = int(std::lround(n * fractions[2] / sum));
    if (n >= 3) {
      if (fractions[1] > 0) n_val = std::max(n_val, 1);
      if (fractions[2] > 0) n_test = std::max(n_test, 1);
    }
    n_val = std::min(n_val, n);
    n_test = std::min(n_test, n - n_val);
    if (fractions[0] > 0 && n - n_val - n_test < 1 && n >= 1) {
      if (n_test > 0) {
        --n_test;
      } else if (n_val > 0) {
        --n_val;
      }
    }
    const int n_train = n - n_val - n_test;
    DatasetSplit ds;
    ds.path = listing.spec.path;
    ds.crops = listing.spec.crops;
    ds.train.assign(names.begin(), names.begin() + n_train);
    ds.val.assign(names.begin() + n_train, names.begin() + n_train + n_val);
    ds.test.assign(names.begin() + n_train + n_val, names.end());
    for (auto* part : {&ds.train, &ds.val, &ds.test}) {
      std::sort(part->begin(), part->end(), NaturalLess);
    }
    split.datasets.push_back(std::move(ds));
  }
  return split;
}

std::vector<PersonImages> SelectPeople(const DatasetListing& listing,
                                       const std::vector<std::string>& names) {
  std::vector<PersonImages> out;
  for (const auto& name : names) {
    for (const auto& p : listing.people) {
      if (p.name == name) {
        out.push_back(p);
        break;
      }
    }
  }
  return out;
}

namespace {

struct Job {
  std::string path;
  bool crops = false;
  int label = 0;
};

struct JobResult {
  cv::Mat crop;
  std::string reason;  // empty on success
  bool cache_hit = false;
};

StatusOr<JobResult> AlignOne(const FacePipeline& pipeline, const Job& job,
                             const std::string& cache_dir) {
  JobResult result;
  auto bytes = ReadFile(job.path);
  if (!bytes.ok()) {
    result.reason = std::string(bytes.status().message());
    return result;
  }
  const int crop_size = pipeline.options().crop_size;
  const std::string key =
      Sha256Hex(Sha256Hex(*bytes) + "|" + kPipelineVersion + "|" + std::to_string(crop_size) + "|" +
                (job.crops ? "whole" : "detect"));
  fs::path entry;
  if (!cache_dir.empty()) {
    const fs::path dir = fs::path(cache_dir) / key.substr(0, 2);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return absl::InternalError("cannot create cache folder " + dir.string());
    entry = dir / key;
    const fs::path png = entry.string() + ".png", skip = entry.string() + ".skip";
    if (fs::exists(png)) {
      result.crop = cv::imread(png.string(), cv::IMREAD_COLOR);
      if (!result.crop.empty() && result.crop.rows == crop_size) {
        result.cache_hit = true;
        return result;
      }
    } else if (fs::exists(skip)) {
      auto reason = ReadFile(skip.string());
      if (reason.ok()) {
        result.reason = *reason;
        result.cache_hit = true;
        return result;
      }
    }
  }
  auto processed =
      pipeline.Process(*bytes, job.crops ? FaceMode::kWholeImage : FaceMode::kDetect, 1);
  if (!processed.ok()) {
    result.reason = std::string(processed.status().message());
  } else if (processed->faces.empty()) {
    result.reason = "no face found";
  } else {
    result.crop = processed->faces.front().crop;
  }
  if (!entry.empty()) {
    if (result.reason.empty()) {
      std::vector<unsigned char> png;
      if (!cv::imencode(".png", result.crop, png)) {
        return absl::InternalError("cannot encode crop of " + job.path);
      }
      FACEID_RETURN_IF_ERROR(
          WriteFileAtomic(entry.string() + ".png", std::string(png.begin(), png.end())));
    } else {
      FACEID_RETURN_IF_ERROR(WriteFileAtomic(entry.string() + ".skip", result.reason));
    }
  }
  return result;
}

}  // namespace

StatusOr<AlignedSet> AlignPeople(const FacePipeline& pipeline,
                                 const std::vector<std::pair<DatasetSpec, PersonImages>>& people,
                                 const AlignOptions& options) {
  AlignedSet set;
  std::vector<Job> jobs;
  for (const auto& [spec, person] : people) {
    const int label = int(set.names.size());
    set.names.push_back(fs::path(spec.path).filename().string() + "/" + person.name);
    for (const auto& image : person.images) jobs.push_back({image, spec.crops, label});
  }
  std::vector<StatusOr<JobResult>> results(jobs.size(), JobResult{});
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> done{0};
  std::atomic<bool> cancelled{false};
  auto worker = [&] {
    for (std::size_t i = next++; i < jobs.size(); i = next++) {
      if (cancelled.load() || (options.cancelled && options.cancelled())) {
        cancelled.store(true);
        ++done;
        continue;
      }
      try {
        results[i] = AlignOne(pipeline, jobs[i], options.cache_dir);
      } catch (const cv::Exception& e) {
        results[i] = absl::InternalError("OpenCV failed on " + jobs[i].path + ": " + e.what());
      } catch (const std::exception& e) {
        results[i] = absl::InternalError("aligning " + jobs[i].path + " failed: " + e.what());
      }
      ++done;
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < std::max(1, options.threads); ++t) threads.emplace_back(worker);
  if (options.progress) {
    auto last = std::chrono::steady_clock::now();
    while (done.load() < jobs.size()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const auto now = std::chrono::steady_clock::now();
      if (std::chrono::duration<double>(now - last).count() >= options.progress_every_s) {
        options.progress(done.load(), jobs.size());
        last = now;
      }
    }
    options.progress(jobs.size(), jobs.size());
  }
  for (auto& t : threads) t.join();
  if (cancelled.load()) {
    return absl::CancelledError(
        "interrupted while aligning images; the crops aligned so far "
        "are cached, so a new run starts where this one stopped");
  }

  std::vector<int> kept_per_label(set.names.size(), 0);
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    if (!results[i].ok()) return results[i].status();
    JobResult& r = *results[i];
    set.cache_hits += r.cache_hit ? 1 : 0;
    if (!r.reason.empty()) {
      set.skipped.push_back(jobs[i].path + ": " + r.reason);
      continue;
    }
    set.images.push_back({std::move(r.crop), jobs[i].label, jobs[i].path});
    ++kept_per_label[jobs[i].label];
  }

  // Drop people left with too few aligned images and renumber the labels densely.
  std::vector<int> remap(set.names.size(), -1);
  std::vector<std::string> names;
  for (std::size_t l = 0; l < set.names.size(); ++l) {
    if (kept_per_label[l] >= std::max(1, options.min_images)) {
      remap[l] = int(names.size());
      names.push_back(set.names[l]);
    } else {
      set.skipped.push_back(set.names[l] + ": only " + std::to_string(kept_per_label[l]) +
                            " aligned image(s), person left out");
    }
  }
  std::vector<AlignedImage> images;
  for (auto& image : set.images) {
    if (remap[image.label] < 0) continue;
    image.label = remap[image.label];
    images.push_back(std::move(image));
  }
  set.names = std::move(names);
  set.images = std::move(images);
  return set;
}

}  // namespace faceid
