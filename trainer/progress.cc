#include "trainer/progress.h"

#include <unistd.h>

#include <cmath>

namespace faceid {

namespace {

std::string Clock(double seconds) {
  const long s = long(std::lround(std::max(0.0, seconds)));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%ld:%02ld", s / 60, s % 60);
  return buf;
}

}  // namespace

ProgressBar::ProgressBar(int epoch, int epochs, std::int64_t total_steps, bool tty, std::FILE* out,
                         double plain_every_s)
    : epoch_(epoch),
      epochs_(epochs),
      total_(total_steps),
      tty_(tty),
      out_(out),
      plain_every_s_(plain_every_s),
      start_(std::chrono::steady_clock::now()),
      last_plain_(start_) {}

std::string ProgressBar::Format(std::int64_t step, std::int64_t total, double eta_s,
                                const std::vector<std::pair<std::string, double>>& values,
                                int bar_width) {
  std::string bar(std::size_t(bar_width), '.');
  const int done = total > 0 ? int(double(bar_width) * double(step) / double(total)) : 0;
  for (int i = 0; i < done && i < bar_width; ++i) bar[std::size_t(i)] = '=';
  if (done < bar_width) bar[std::size_t(done)] = '>';
  std::string text =
      std::to_string(step) + "/" + std::to_string(total) + " [" + bar + "] ETA " + Clock(eta_s);
  for (const auto& [name, value] : values) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), " %s %.4f", name.c_str(), value);
    text += buf;
  }
  return text;
}

void ProgressBar::Update(std::int64_t step,
                         const std::vector<std::pair<std::string, double>>& values) {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double eta = step > 0 ? elapsed / double(step) * double(total_ - step) : 0.0;
  last_line_ = "epoch " + std::to_string(epoch_) + "/" + std::to_string(epochs_) + " " +
               Format(step, total_, eta, values);
  if (tty_) {
    std::fprintf(out_, "\r%s\033[K", last_line_.c_str());
    std::fflush(out_);
  } else if (std::chrono::duration<double>(now - last_plain_).count() >= plain_every_s_) {
    last_plain_ = now;
    std::fprintf(out_, "%s\n", last_line_.c_str());
    std::fflush(out_);
  }
}

void ProgressBar::Finish(const std::string& suffix) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const std::string line = last_line_ + " | " + Clock(elapsed) + " " + suffix;
  if (tty_) {
    std::fprintf(out_, "\r%s\033[K\n", line.c_str());
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

bool StdoutIsTerminal() { return isatty(STDOUT_FILENO) == 1; }

}  // namespace faceid
