// Face datasets for training and evaluation: listing person-per-folder trees, the identity
// split, and alignment through FacePipeline with an on-disk crop cache. No LibTorch.
//
// A dataset is a folder with one sub-folder per person holding that person's images
// (jpg, jpeg, png, pgm, ppm, bmp, webp, tif, tiff). `DIR:crops` marks a dataset whose images
// are ready face crops (aligned with FaceMode::kWholeImage instead of detection).
// Functions are thread-compatible; AlignDataset uses worker threads internally.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/face_pipeline.h"
#include "core/status.h"

namespace faceid {

struct DatasetSpec {
  std::string path;    // absolute folder
  bool crops = false;  // images are face crops
};

// "DIR" or "DIR:crops" -> spec with an absolute path. INVALID_ARGUMENT for an empty path.
StatusOr<DatasetSpec> ParseDatasetSpec(const std::string& text);

struct PersonImages {
  std::string name;                 // folder name
  std::vector<std::string> images;  // absolute paths in natural filename order
};

struct DatasetListing {
  DatasetSpec spec;
  std::vector<PersonImages> people;  // sorted by name
  // People, folders and files left out, with the reason (e.g. "Ann: 1 image(s) < --min-images
  // 2", "Bob: cannot read the folder: Permission denied", "Ann/x.jpg: Too many levels of
  // symbolic links").
  std::vector<std::string> skipped_people;
};

// INVALID_ARGUMENT when two specs name the same folder (by any spelling or link): each of its
// people would become two identities, whose pairs then count as impostors.
Status CheckDistinctDatasets(const std::vector<DatasetSpec>& specs);

// What to log of a long list of left-out entries: the first `max` of them, then one line
// "... and N more" when there are more.
std::vector<std::string> FirstLines(const std::vector<std::string>& items, std::size_t max = 20);

struct ListLimits {
  int min_images = 2;             // people with fewer images are left out (and listed)
  int max_people = 0;             // 0 = all; else the first N qualifying names in order
  int max_images_per_person = 0;  // 0 = all; else the first N in natural order
};

// "a2" < "a10": digit runs compare by value, the rest byte-wise.
bool NaturalLess(const std::string& a, const std::string& b);

// Lists the people of one dataset. NOT_FOUND when the folder does not exist;
// INVALID_ARGUMENT when it is not a folder, holds no person folder with images, or no person
// passes the limits (the message says how many were seen and why they were left out).
StatusOr<DatasetListing> ListDataset(const DatasetSpec& spec, const ListLimits& limits);

// Names per part of one dataset.
struct DatasetSplit {
  std::string path;
  bool crops = false;
  std::vector<std::string> train, val, test;
};

struct Split {
  std::uint64_t seed = 0;
  std::vector<DatasetSplit> datasets;

  // {"seed":N,"datasets":[{"path":..,"crops":..,"train":[..],"val":[..],"test":[..]}]}
  nlohmann::json ToJson() const;
  static StatusOr<Split> FromJson(const nlohmann::json& json);
};

// Splits each dataset's people (never images) by the fractions train, val, test (each >= 0,
// sum > 0, normalised): names shuffled with `seed`, then cut in that order. With at least
// three people, a part with a positive fraction gets at least one person.
// INVALID_ARGUMENT for negative fractions or a zero sum.
StatusOr<Split> SplitIdentities(const std::vector<DatasetListing>& listings,
                                const std::vector<double>& fractions, std::uint64_t seed);

// One aligned image.
struct AlignedImage {
  cv::Mat crop;   // CV_8UC3 BGR, pipeline crop_size square
  int label = 0;  // index into AlignedSet::names
  std::string path;
};

// Aligned images of a set of people, labels 0..names.size()-1 in the order people were given;
// within a label, images keep natural filename order.
struct AlignedSet {
  std::vector<std::string> names;  // "dataset_folder/person" per label
  std::vector<AlignedImage> images;
  // Images that gave no crop, "path: reason" (no face, undecodable, ...).
  std::vector<std::string> skipped;
  std::int64_t cache_hits = 0;
};

struct AlignOptions {
  std::string cache_dir;  // empty = no cache
  int threads = 2;
  // People keeping fewer aligned images than this are dropped (listed in `skipped`).
  int min_images = 1;
  // Called from the calling thread about every `progress_every_s` while images are aligned
  // (a cold alignment of a large set takes minutes), with images done and in total, and once
  // more at the end with done == total.
  std::function<void(std::size_t done, std::size_t total)> progress;
  double progress_every_s = 10;
  // Polled between images; when it returns true the workers stop and AlignPeople answers
  // CANCELLED (the crops aligned so far stay cached).
  std::function<bool()> cancelled;
};

// People to align: the listing entries named in `names` (in that order).
std::vector<PersonImages> SelectPeople(const DatasetListing& listing,
                                       const std::vector<std::string>& names);

// Aligns the largest face of every image (crop datasets: the whole image) through `pipeline`.
// A cache entry is keyed by SHA-256 of the file content, kPipelineVersion, crop size and mode;
// failures are cached too, with their reason. Unreadable or faceless images are skipped and
// listed, never fatal. INTERNAL when the cache folder cannot be created or written;
// CANCELLED when options.cancelled said so.
StatusOr<AlignedSet> AlignPeople(const FacePipeline& pipeline,
                                 const std::vector<std::pair<DatasetSpec, PersonImages>>& people,
                                 const AlignOptions& options);

}  // namespace faceid
