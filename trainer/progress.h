// Keras-style progress display for training epochs. No LibTorch.
//
// On a terminal: one line redrawn in place, "12/40 [=======>......] ETA 0:31 acc 0.41 ce 2.10
// centre 0.35 total 2.45". Otherwise: one plain line every `plain_every_s` seconds and at the
// end of the epoch. Not thread-safe: one training thread calls it.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace faceid {

class ProgressBar {
 public:
  // `out` is where the bar goes (stdout by default); `tty` whether it is a terminal.
  ProgressBar(int epoch, int epochs, std::int64_t total_steps, bool tty, std::FILE* out = stdout,
              double plain_every_s = 10.0);

  // `step` is 1-based within the epoch; `values` are (name, value) pairs shown in order.
  void Update(std::int64_t step, const std::vector<std::pair<std::string, double>>& values);

  // Ends the line, appending `suffix` (e.g. validation figures).
  void Finish(const std::string& suffix);

  // The text of one update, without control characters (for tests and plain lines).
  static std::string Format(std::int64_t step, std::int64_t total, double eta_s,
                            const std::vector<std::pair<std::string, double>>& values,
                            int bar_width = 30);

 private:
  int epoch_, epochs_;
  std::int64_t total_;
  bool tty_;
  std::FILE* out_;
  double plain_every_s_;
  std::chrono::steady_clock::time_point start_, last_plain_;
  std::string last_line_;
};

// Whether stdout is a terminal.
bool StdoutIsTerminal();

}  // namespace faceid
