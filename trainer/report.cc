#include "trainer/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

namespace faceid {

namespace {

struct Series {
  std::string name;
  std::vector<cv::Point2d> points;
  cv::Scalar colour;
  bool markers = false;  // dots instead of a line
};

const cv::Scalar kPalette[] = {{180, 119, 31},  {14, 127, 255}, {44, 160, 44},   {40, 39, 214},
                               {189, 103, 148}, {75, 86, 140},  {194, 119, 227}, {127, 127, 127},
                               {34, 189, 188},  {207, 190, 23}};

std::string Tick(double v) {
  char buf[32];
  if (std::fabs(v) >= 1000) {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  } else {
    std::snprintf(buf, sizeof(buf), "%.3g", v);
  }
  return buf;
}

// One panel: axes with 5 ticks each, labels, title, legend. `log_x` plots log10(x) with
// ticks labelled as powers of ten.
void DrawPanel(cv::Mat& canvas, cv::Rect area, const std::string& title, const std::string& xl,
               const std::string& yl, const std::vector<Series>& series, bool log_x = false) {
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  cv::rectangle(canvas, area, cv::Scalar(255, 255, 255), cv::FILLED);
  cv::putText(canvas, title, {area.x + 60, area.y + 22}, font, 0.55, {0, 0, 0}, 1, cv::LINE_AA);
  const cv::Rect plot(area.x + 60, area.y + 35, area.width - 80, area.height - 85);
  double x0 = std::numeric_limits<double>::max(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : series) {
    for (auto p : s.points) {
      if (log_x) p.x = std::log10(std::max(p.x, 1e-4));
      x0 = std::min(x0, p.x);
      x1 = std::max(x1, p.x);
      y0 = std::min(y0, p.y);
      y1 = std::max(y1, p.y);
    }
  }
  cv::rectangle(canvas, plot, {0, 0, 0}, 1);
  cv::putText(canvas, xl, {plot.x + plot.width / 2 - 4 * int(xl.size()), area.y + area.height - 8},
              font, 0.45, {0, 0, 0}, 1, cv::LINE_AA);
  cv::Mat label(16, 8 * int(yl.size()) + 8, CV_8UC3, cv::Scalar(255, 255, 255));
  cv::putText(label, yl, {2, 12}, font, 0.45, {0, 0, 0}, 1, cv::LINE_AA);
  cv::rotate(label, label, cv::ROTATE_90_COUNTERCLOCKWISE);
  const int ly = std::max(area.y, plot.y + plot.height / 2 - label.rows / 2);
  if (ly + label.rows <= canvas.rows)
    label.copyTo(canvas(cv::Rect(area.x + 2, ly, 16, label.rows)));
  if (x0 > x1) {
    cv::putText(canvas, "no data", {plot.x + plot.width / 2 - 30, plot.y + plot.height / 2}, font,
                0.5, {100, 100, 100}, 1, cv::LINE_AA);
    return;
  }
  if (x1 - x0 < 1e-12) {
    x0 -= 0.5;
    x1 += 0.5;
  }
  if (y1 - y0 < 1e-12) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  auto map = [&](cv::Point2d p) {
    if (log_x) p.x = std::log10(std::max(p.x, 1e-4));
    return cv::Point(int(plot.x + (p.x - x0) / (x1 - x0) * plot.width),
                     int(plot.y + plot.height - (p.y - y0) / (y1 - y0) * plot.height));
  };
  for (int i = 0; i <= 4; ++i) {
    const double xv = x0 + (x1 - x0) * i / 4.0, yv = y0 + (y1 - y0) * i / 4.0;
    const int px = plot.x + plot.width * i / 4, py = plot.y + plot.height - plot.height * i / 4;
    cv::line(canvas, {px, plot.y + plot.height}, {px, plot.y + plot.height + 4}, {0, 0, 0});
    cv::line(canvas, {plot.x - 4, py}, {plot.x, py}, {0, 0, 0});
    const std::string xs = log_x ? "1e" + Tick(xv) : Tick(xv);
    cv::putText(canvas, xs, {px - 12, plot.y + plot.height + 18}, font, 0.38, {0, 0, 0}, 1,
                cv::LINE_AA);
    cv::putText(canvas, Tick(yv), {plot.x - 48, py + 4}, font, 0.38, {0, 0, 0}, 1, cv::LINE_AA);
  }
  for (const auto& s : series) {
    if (s.markers) {
      for (const auto& p : s.points)
        cv::circle(canvas, map(p), 3, s.colour, cv::FILLED, cv::LINE_AA);
      continue;
    }
    for (std::size_t i = 1; i < s.points.size(); ++i) {
      cv::line(canvas, map(s.points[i - 1]), map(s.points[i]), s.colour, 2, cv::LINE_AA);
    }
    if (s.points.size() == 1) cv::circle(canvas, map(s.points[0]), 3, s.colour, cv::FILLED);
  }
  int ly2 = plot.y + 14;
  for (const auto& s : series) {
    cv::line(canvas, {plot.x + plot.width - 150, ly2 - 4}, {plot.x + plot.width - 130, ly2 - 4},
             s.colour, 3);
    cv::putText(canvas, s.name.substr(0, 22), {plot.x + plot.width - 125, ly2}, font, 0.38,
                {0, 0, 0}, 1, cv::LINE_AA);
    ly2 += 14;
  }
}

}  // namespace

Status WriteReport(const std::string& run_dir, const std::string& output_png) {
  const std::string metrics_path = run_dir + "/metrics.jsonl";
  std::ifstream in(metrics_path);
  if (!in)
    return absl::NotFoundError("no " + metrics_path + " (is --run a faceid-train run folder?)");
  Series ce{"cross-entropy", {}, kPalette[0]}, centre{"centre (raw)", {}, kPalette[1]},
      triplet{"triplet", {}, kPalette[4]}, total{"total", {}, kPalette[2]};
  Series acc{"train accuracy", {}, kPalette[0]}, auc{"val AUC", {}, kPalette[1]},
      rank1{"val rank-1", {}, kPalette[2]};
  std::string line;
  int number = 0;
  bool any_center = false, any_triplet = false;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) {
      return absl::InvalidArgumentError(metrics_path + " line " + std::to_string(number) +
                                        " is not JSON");
    }
    if (j.value("type", "") != "epoch") continue;
    const double e = j.value("epoch", 0);
    ce.points.emplace_back(e, j.value("ce", 0.0));
    centre.points.emplace_back(e, j.value("center", 0.0));
    triplet.points.emplace_back(e, j.value("triplet", 0.0));
    total.points.emplace_back(e, j.value("total", 0.0));
    any_center |= j.value("center", 0.0) != 0;
    any_triplet |= j.value("triplet", 0.0) != 0;
    acc.points.emplace_back(e, j.value("acc", 0.0));
    if (j.contains("val_auc")) auc.points.emplace_back(e, j["val_auc"].get<double>());
    if (j.contains("val_rank1")) rank1.points.emplace_back(e, j["val_rank1"].get<double>());
  }
  if (ce.points.empty()) {
    return absl::InvalidArgumentError(metrics_path + " has no epoch line (did an epoch finish?)");
  }

  nlohmann::json eval;
  std::ifstream eval_in(run_dir + "/eval.json");
  if (eval_in) eval = nlohmann::json::parse(eval_in, nullptr, false);
  if (eval.is_discarded()) eval = nlohmann::json();

  const int w = 620, h = 400;
  cv::Mat canvas(h * 3, w * 2, CV_8UC3, cv::Scalar(235, 235, 235));
  std::vector<Series> losses = {ce, total};
  if (any_center) losses.push_back(centre);
  if (any_triplet) losses.push_back(triplet);
  DrawPanel(canvas, {5, 5, w - 10, h - 10}, "Training losses per epoch", "epoch", "loss", losses);
  DrawPanel(canvas, {w + 5, 5, w - 10, h - 10}, "Accuracy and validation metrics", "epoch", "value",
            {acc, auc, rank1});

  Series roc{"test ROC", {}, kPalette[3]};
  if (eval.contains("roc")) {
    for (const auto& p : eval["roc"]) {
      if (p[0].get<double>() > 0) roc.points.emplace_back(p[0].get<double>(), p[1].get<double>());
    }
  }
  DrawPanel(canvas, {5, h + 5, w - 10, h - 10}, "Test ROC (genuine vs impostor pairs)",
            "false accept rate (log)", "true accept rate", {roc}, true);

  Series hg{"genuine", {}, kPalette[2]}, hi{"impostor", {}, kPalette[3]};
  if (eval.contains("hist_genuine")) {
    const auto g = eval["hist_genuine"].get<std::vector<double>>();
    const auto im = eval["hist_impostor"].get<std::vector<double>>();
    double sg = 0, si = 0;
    for (double v : g) sg += v;
    for (double v : im) si += v;
    for (std::size_t b = 0; b < g.size(); ++b) {
      const double x = -1.0 + 2.0 * (b + 0.5) / double(g.size());
      hg.points.emplace_back(x, sg > 0 ? g[b] / sg : 0);
      hi.points.emplace_back(x, si > 0 ? im[b] / si : 0);
    }
  }
  DrawPanel(canvas, {w + 5, h + 5, w - 10, h - 10}, "Test cosine similarity histograms",
            "cosine similarity", "share of pairs", {hg, hi});

  std::vector<Series> people;
  if (eval.contains("projection")) {
    const auto names = eval["projection"]["names"].get<std::vector<std::string>>();
    for (std::size_t i = 0; i < names.size(); ++i) {
      const std::string short_name = names[i].substr(names[i].find_last_of('/') + 1);
      people.push_back({short_name, {}, kPalette[i % 10], true});
    }
    for (const auto& p : eval["projection"]["points"]) {
      const std::size_t label = p[2].get<std::size_t>();
      if (label < people.size())
        people[label].points.emplace_back(p[0].get<double>(), p[1].get<double>());
    }
  }
  DrawPanel(canvas, {5, 2 * h + 5, 2 * w - 10, h - 10},
            "Validation embeddings, 2-D PCA, one colour per person", "PC 1", "PC 2", people);

  try {
    if (!cv::imwrite(output_png, canvas)) {
      return absl::InternalError("cannot write " + output_png);
    }
  } catch (const cv::Exception& e) {
    return absl::InternalError("cannot write " + output_png + ": " + e.what());
  }
  return absl::OkStatus();
}

}  // namespace faceid
