#include "trainer/report.h"

#include <plplot.h>
#include <plstream.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace faceid {

namespace {

constexpr int kWidthPx = 1600;
constexpr int kHeightPx = 1000;
// PLplot's Cairo device that renders into caller memory (plplot-driver-cairo): PLplot never
// opens a file or a window, and the PNG is encoded by OpenCV.
constexpr const char* kDevice = "memcairo";

// Colour map 0 of the stream.
constexpr PLINT kWhite = 0, kInk = 1, kGrid = 2, kMuted = 3, kGenuineFill = 4, kImpostorFill = 5;
constexpr PLINT kFirstColour = 6;  // kPalette[i] is colour kFirstColour + i
constexpr int kPalette[][3] = {{31, 119, 180},  {255, 127, 14}, {44, 160, 44},   {214, 39, 40},
                               {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {127, 127, 127},
                               {188, 189, 34},  {23, 190, 207}};
constexpr int kPaletteSize = int(sizeof(kPalette) / sizeof(kPalette[0]));
constexpr PLINT kBlue = kFirstColour, kOrange = kFirstColour + 1, kGreen = kFirstColour + 2,
                kRed = kFirstColour + 3, kPurple = kFirstColour + 4;

constexpr PLFLT kCharScale = 0.62;         // of PLplot's default character height
constexpr PLFLT kLineWidth = 2.5;          // Cairo units (~pixels)
constexpr PLINT kDashed = 2;               // PLplot line style
const char* const kDot = "\xe2\x80\xa2";   // U+2022 bullet: marker on line series
const char* const kDisc = "\xe2\x97\x8f";  // U+25CF black circle: scatter marker

// Thrown by the PLplot exit handler, which PLplot calls instead of exit() on a fatal error.
struct PlplotFatal : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int ThrowOnPlplotExit(const char* message) { throw PlplotFatal(message ? message : ""); }

// PLplot keeps process-wide state (current stream, driver table, exit handler).
std::mutex plplot_mutex;

struct Series {
  std::string name;
  std::vector<PLFLT> x, y;
  PLINT colour = kBlue;
  PLINT style = 1;   // PLplot line style: 1 solid, 2 dashed
  bool line = true;  // false: markers only (scatter)
};

// A panel's plot box in normalised page coordinates (0..1, origin bottom left), and the
// height of its title's baseline.
struct Box {
  PLFLT x0, x1, y0, y1, title_y;
};

struct Range {
  double lo = 0, hi = 0;
};

struct Axes {
  Range x, y;
  bool log_x = false;            // x values are log10 and ticks read 10^n
  PLFLT x_tick = 0, y_tick = 0;  // 0: PLplot picks
  std::optional<Range> y_right;  // a second y axis on the right, in `right_colour`
  PLINT right_colour = 1;
};

std::optional<double> Number(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return std::nullopt;
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  const double v = it->get<double>();
  if (!std::isfinite(v)) return std::nullopt;
  return v;
}

// Smallest and largest finite value of x (or y) over all series; lo > hi when there is none.
Range Extent(const std::vector<Series>& series, bool of_y) {
  Range r{1e300, -1e300};
  for (const auto& s : series) {
    for (PLFLT v : of_y ? s.y : s.x) {
      if (!std::isfinite(v)) continue;
      r.lo = std::min(r.lo, v);
      r.hi = std::max(r.hi, v);
    }
  }
  return r;
}

// `r` widened by `share` of its span on each side; a zero span becomes ±0.5 (or ±10%).
Range Padded(Range r, double share) {
  if (r.hi - r.lo < 1e-9 * std::max(1.0, std::fabs(r.hi))) {
    const double half = r.lo == 0 ? 0.5 : std::fabs(r.lo) * 0.1;
    return {r.lo - half, r.hi + half};
  }
  const double pad = (r.hi - r.lo) * share;
  return {r.lo - pad, r.hi + pad};
}

// Tick step for a range of epochs: whole epochs, about six labels.
PLFLT EpochTick(Range r) {
  const double raw = (r.hi - r.lo) / 6.0;
  for (double step : {1.0, 2.0, 5.0, 10.0, 20.0, 25.0, 50.0, 100.0, 200.0, 500.0}) {
    if (step >= raw) return step;
  }
  return 0;
}

// PLplot treats '#' as its escape character; person names come from folder names.
std::string Escaped(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '#') out += '#';
    out += c;
  }
  return out;
}

// "lfw_deepfunneled/Anthony_LaPaglia" -> "Anthony LaPaglia", at most `max_chars` UTF-8
// characters (then "..").
std::string ShortName(const std::string& name, std::size_t max_chars) {
  std::string s = name.substr(name.find_last_of('/') + 1);
  std::replace(s.begin(), s.end(), '_', ' ');
  std::size_t chars = 0, cut = s.size();
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;  // UTF-8 continuation
    if (++chars > max_chars) {
      cut = i;
      break;
    }
  }
  return cut < s.size() ? s.substr(0, cut) + ".." : s;
}

std::string Fixed(double v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

// Per-epoch curves from metrics.jsonl.
struct EpochCurves {
  Series ce{"cross-entropy", {}, {}, kBlue};
  Series centre{"centre", {}, {}, kOrange};
  Series triplet{"triplet", {}, {}, kPurple};
  Series total{"total", {}, {}, kInk};
  Series acc{"train accuracy", {}, {}, kBlue};
  Series auc{"val AUC", {}, {}, kOrange};
  Series rank1{"val rank-1", {}, {}, kGreen};
};

void AddPoint(Series& s, double x, std::optional<double> y) {
  if (!y) return;
  s.x.push_back(x);
  s.y.push_back(*y);
}

StatusOr<EpochCurves> ReadMetrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("no " + path + " (is --run a faceid-train run folder?)");

  // A resumed run can log an epoch twice (interrupted, then complete): the last line wins.
  std::map<double, nlohmann::json> epochs;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    // A run killed mid-write leaves its last line cut short (no newline): that line is skipped.
    if ((j.is_discarded() || !j.is_object()) && in.eof()) break;
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(path + " line " + std::to_string(number) +
                                        " is not a JSON object");
    }
    const auto type = j.find("type");
    if (type == j.end() || *type != "epoch") continue;
    const std::optional<double> epoch = Number(j, "epoch");
    if (!epoch) {
      return absl::InvalidArgumentError(path + " line " + std::to_string(number) +
                                        " is an epoch line without an epoch number");
    }
    epochs[*epoch] = std::move(j);
  }
  if (epochs.empty()) {
    return absl::InvalidArgumentError(path + " has no epoch line (did an epoch finish?)");
  }

  EpochCurves c;
  for (const auto& [e, j] : epochs) {
    AddPoint(c.ce, e, Number(j, "ce"));
    AddPoint(c.centre, e, Number(j, "center"));
    AddPoint(c.triplet, e, Number(j, "triplet"));
    AddPoint(c.total, e, Number(j, "total"));
    AddPoint(c.acc, e, Number(j, "acc"));
    AddPoint(c.auc, e, Number(j, "val_auc"));
    AddPoint(c.rank1, e, Number(j, "val_rank1"));
  }
  return c;
}

bool AllZero(const Series& s) {
  return std::all_of(s.y.begin(), s.y.end(), [](PLFLT v) { return v == 0; });
}

// Plot data from eval.json; each part is empty when absent or malformed, and its panel
// then says "no data" with `missing`.
struct EvalPlots {
  std::string missing;  // why a panel has no data
  Series roc{"test ROC", {}, {}, kBlue};
  std::optional<double> auc, tar_1e3, tar_1e2, threshold;
  std::vector<double> hist_genuine, hist_impostor;
  std::vector<Series> people;
};

EvalPlots ReadEval(const std::string& path) {
  EvalPlots e;
  std::ifstream in(path);
  if (!in) {
    e.missing = "eval.json not found";
    return e;
  }
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    e.missing = "eval.json is not a JSON object";
    return e;
  }
  e.missing = "not in eval.json";
  try {
    if (j.contains("roc")) {
      for (const auto& p : j["roc"]) {
        const double far = p.at(0).get<double>(), tar = p.at(1).get<double>();
        if (far > 0 && std::isfinite(far) && std::isfinite(tar)) {
          e.roc.x.push_back(std::log10(far));
          e.roc.y.push_back(tar);
        }
      }
    }
  } catch (const nlohmann::json::exception&) {
    e.roc.x.clear();
    e.roc.y.clear();
  }
  if (j.contains("test")) {
    e.auc = Number(j["test"], "auc");
    e.tar_1e3 = Number(j["test"], "tar_far_1e-3");
    e.tar_1e2 = Number(j["test"], "tar_far_1e-2");
  }
  e.threshold = Number(j, "threshold");
  try {
    if (j.contains("hist_genuine") && j.contains("hist_impostor")) {
      e.hist_genuine = j["hist_genuine"].get<std::vector<double>>();
      e.hist_impostor = j["hist_impostor"].get<std::vector<double>>();
      if (e.hist_genuine.size() != e.hist_impostor.size()) e.hist_genuine.clear();
    }
  } catch (const nlohmann::json::exception&) {
    e.hist_genuine.clear();
  }
  try {
    if (j.contains("projection")) {
      const auto names = j["projection"].at("names").get<std::vector<std::string>>();
      for (std::size_t i = 0; i < names.size(); ++i) {
        e.people.push_back({ShortName(names[i], 16),
                            {},
                            {},
                            PLINT(kFirstColour + int(i) % kPaletteSize),
                            1,
                            false});
      }
      for (const auto& p : j["projection"].at("points")) {
        const auto label = p.at(2).get<std::size_t>();
        const double x = p.at(0).get<double>(), y = p.at(1).get<double>();
        if (label < e.people.size() && std::isfinite(x) && std::isfinite(y)) {
          e.people[label].x.push_back(x);
          e.people[label].y.push_back(y);
        }
      }
      e.people.erase(std::remove_if(e.people.begin(), e.people.end(),
                                    [](const Series& s) { return s.x.empty(); }),
                     e.people.end());
    }
  } catch (const nlohmann::json::exception&) {
    e.people.clear();
  }
  return e;
}

// Error if PLplot cannot find the device. Checked before plinit(), which would otherwise
// prompt on stdin for another device.
Status CheckDevice() {
  PLINT errcode = 0;
  char errmsg[1024] = "";
  plsError(&errcode, errmsg);  // plabort() messages go here instead of stderr
  const char* menus[128];
  const char* names[128];
  const char** menu_list = menus;
  const char** name_list = names;
  int count = 128;
  plgDevs(&menu_list, &name_list, &count);
  plsError(nullptr, nullptr);
  for (int i = 0; i < count; ++i) {
    if (std::string(names[i]) == kDevice) return absl::OkStatus();
  }
  const char* env = std::getenv("PLPLOT_DRV_DIR");
  return absl::InternalError(
      std::string("PLplot has no ") + kDevice + " device in " +
      (env ? std::string(env) + " (PLPLOT_DRV_DIR)" : std::string(FACEID_PLPLOT_DRV_DIR)) +
      ": install the Debian package plplot-driver-cairo (scripts/install-deps.sh)");
}

// One PLplot page drawn into a caller-owned RGB buffer.
class Figure {
 public:
  explicit Figure(cv::Mat& rgb) : pls_() {
    pls_.sError(&errcode_, errmsg_);
    pls_.sdev(kDevice);
    pls_.smem(rgb.cols, rgb.rows, rgb.data);
    pls_.spause(false);
    pls_.scolbg(255, 255, 255);
    pls_.init();
    pls_.scol0(kWhite, 255, 255, 255);
    pls_.scol0(kInk, 0, 0, 0);
    pls_.scol0(kGrid, 225, 225, 225);
    pls_.scol0(kMuted, 110, 110, 110);
    pls_.scol0a(kGenuineFill, 44, 160, 44, 0.25);
    pls_.scol0a(kImpostorFill, 214, 39, 40, 0.25);
    for (int i = 0; i < kPaletteSize; ++i) {
      pls_.scol0(kFirstColour + i, kPalette[i][0], kPalette[i][1], kPalette[i][2]);
    }
    pls_.adv(0);
    pls_.schr(0, kCharScale);
  }

  // Empty when PLplot reported no error so far.
  std::string Error() const { return errcode_ ? std::string(errmsg_) : std::string(); }

  // Axes, grid, tick labels and axis labels (`y_right_label` for a.y_right); leaves the
  // window on the left y axis. The title goes on with Title() after the legend.
  void Frame(const Box& b, const Axes& a, const std::string& x_label, const std::string& y_label,
             const std::string& y_right_label = "") {
    pls_.vpor(b.x0, b.x1, b.y0, b.y1);
    pls_.wind(a.x.lo, a.x.hi, a.y.lo, a.y.hi);
    const std::string lx = a.log_x ? "l" : "";
    pls_.width(1);
    pls_.col0(kGrid);
    pls_.box(("g" + lx).c_str(), a.x_tick, 0, "g", a.y_tick, 0);
    pls_.col0(kInk);
    pls_.box(("bcnst" + lx).c_str(), a.x_tick, 0, a.y_right ? "bnstv" : "bcnstv", a.y_tick, 0);
    pls_.mtex("b", 2.8, 0.5, 0.5, Escaped(x_label).c_str());
    pls_.mtex("l", 4.6, 0.5, 0.5, Escaped(y_label).c_str());
    if (a.y_right) {
      pls_.wind(a.x.lo, a.x.hi, a.y_right->lo, a.y_right->hi);
      pls_.col0(a.right_colour);
      pls_.box("", 0, 0, "cmstv", 0, 0);
      pls_.mtex("r", 4.2, 0.5, 0.5, Escaped(y_right_label).c_str());
      pls_.wind(a.x.lo, a.x.hi, a.y.lo, a.y.hi);
    }
  }

  // Switches the world coordinates between the left and the right y axis of `a`.
  void UseRightAxis(const Axes& a, bool right) {
    const Range& y = right && a.y_right ? *a.y_right : a.y;
    pls_.wind(a.x.lo, a.x.hi, y.lo, y.hi);
  }

  // Title centred over the current plot box with its baseline at page height `page_y`.
  void Title(const std::string& title, PLFLT page_y) {
    pls_.schr(0, kCharScale * 1.2);
    const PLFLT disp = (page_y - ViewportTop()) * PageHeightMm() / CharHeightMm();
    pls_.col0(kInk);
    pls_.mtex("t", disp, 0.5, 0.5, Escaped(title).c_str());
    pls_.schr(0, kCharScale);
  }

  void Draw(const Series& s) {
    if (s.x.empty()) return;
    pls_.col0(s.colour);
    if (s.line) {
      pls_.width(kLineWidth);
      pls_.lsty(s.style);
      pls_.line(PLINT(s.x.size()), s.x.data(), s.y.data());
      pls_.lsty(1);
      if (s.style == 1 && s.x.size() <= 40)
        pls_.string(PLINT(s.x.size()), s.x.data(), s.y.data(), kDot);
    } else {
      pls_.string(PLINT(s.x.size()), s.x.data(), s.y.data(), kDisc);
    }
  }

  void Fill(const std::vector<PLFLT>& x, const std::vector<PLFLT>& y, PLINT colour) {
    pls_.col0(colour);
    pls_.fill(PLINT(x.size()), x.data(), y.data());
  }

  // Legend of `items` outside the current plot box, centred above it (kAbove) or below its
  // axis label (kBelow), in `columns` columns filled row by row; `shift` moves it right by
  // that share of the box width.
  enum class Place { kAbove, kBelow };
  void Legend(const std::vector<Series>& items, Place place, int columns, PLFLT shift = 0) {
    const std::size_t n = items.size();
    std::vector<PLINT> opts(n), text_colours(n, kInk), colours(n), styles(n), zeros(n, 0),
        symbol_numbers(n, 1);
    std::vector<PLFLT> widths(n, kLineWidth), ones(n, 1.0), symbol_scales(n, kCharScale);
    std::vector<const char*> texts(n), symbols(n, kDisc);
    std::vector<std::string> escaped(n);
    for (std::size_t i = 0; i < n; ++i) {
      opts[i] = items[i].line ? PL_LEGEND_LINE : PL_LEGEND_SYMBOL;
      escaped[i] = Escaped(items[i].name);
      texts[i] = escaped[i].c_str();
      colours[i] = items[i].colour;
      styles[i] = items[i].style;
    }
    const PLINT rows = PLINT((n + std::size_t(columns) - 1) / std::size_t(columns));
    // Offsets are in viewport heights; below, clear the tick labels and the axis label.
    const PLFLT below_offset = 4.0 * CharHeightMm() / ViewportHeightMm();
    const bool above = place == Place::kAbove;
    const bool all_symbols =
        std::none_of(items.begin(), items.end(), [](const Series& s) { return s.line; });
    PLFLT width = 0, height = 0;
    pls_.legend(
        &width, &height, PL_LEGEND_ROW_MAJOR,
        PL_POSITION_VIEWPORT | PL_POSITION_OUTSIDE | (above ? PL_POSITION_TOP : PL_POSITION_BOTTOM),
        shift, above ? 0.01 : below_offset, all_symbols ? 0.03 : 0.07, kWhite, kInk, 1, rows,
        PLINT(columns), PLINT(n), opts.data(), 0.8, kCharScale * 0.95, 1.9, 0.0,
        text_colours.data(), texts.data(), zeros.data(), zeros.data(), ones.data(), ones.data(),
        colours.data(), styles.data(), widths.data(), colours.data(), symbol_scales.data(),
        symbol_numbers.data(), symbols.data());
  }

  // A text centred at world (x, y) in colour `colour`, `scale` times the usual size.
  void Text(PLFLT x, PLFLT y, const std::string& text, PLINT colour, PLFLT scale = 1.0,
            PLFLT just = 0.5) {
    pls_.schr(0, kCharScale * scale);
    pls_.col0(colour);
    pls_.ptex(x, y, 1, 0, just, Escaped(text).c_str());
    pls_.schr(0, kCharScale);
  }

  // A panel without data: its frame, labels and title, and "no data" with the reason.
  void NoData(const Box& b, const std::string& title, const std::string& x_label,
              const std::string& y_label, const std::string& reason) {
    pls_.vpor(b.x0, b.x1, b.y0, b.y1);
    pls_.wind(0, 1, 0, 1);
    pls_.width(1);
    pls_.col0(kInk);
    pls_.box("bc", 0, 0, "bc", 0, 0);
    pls_.mtex("b", 2.8, 0.5, 0.5, Escaped(x_label).c_str());
    pls_.mtex("l", 4.6, 0.5, 0.5, Escaped(y_label).c_str());
    Title(title, b.title_y);
    Text(0.5, 0.55, "no data", kMuted, 2.0);
    Text(0.5, 0.40, reason, kMuted, 0.9);
  }

  void Width(PLFLT w) { pls_.width(w); }
  void Colour(PLINT c) { pls_.col0(c); }
  void Join(PLFLT x0, PLFLT y0, PLFLT x1, PLFLT y1, PLINT style) {
    pls_.lsty(style);
    pls_.join(x0, y0, x1, y1);
    pls_.lsty(1);
  }

 private:
  PLFLT CharHeightMm() {
    PLFLT def = 0, ht = 0;
    pls_.gchr(def, ht);
    return ht;
  }
  PLFLT PageHeightMm() {
    PLFLT x0 = 0, x1 = 0, y0 = 0, y1 = 0;
    pls_.gspa(x0, x1, y0, y1);
    return y1 - y0;
  }
  PLFLT ViewportTop() {
    PLFLT x0 = 0, x1 = 0, y0 = 0, y1 = 0;
    pls_.gvpd(x0, x1, y0, y1);
    return y1;
  }
  PLFLT ViewportHeightMm() {
    PLFLT x0 = 0, x1 = 0, y0 = 0, y1 = 0;
    pls_.gvpd(x0, x1, y0, y1);
    return (y1 - y0) * PageHeightMm();
  }

  PLINT errcode_ = 0;
  char errmsg_[1024] = "";
  plstream pls_;  // after errcode_/errmsg_, which it points to; its destructor ends the page
};

// The page: panels (a)-(d) two by two on the left, the projection (e) tall on the right
// with its names below. Legends sit between a box and its title.
constexpr Box kLossBox{0.065, 0.265, 0.575, 0.860, 0.965};
constexpr Box kMetricsBox{0.400, 0.620, 0.575, 0.860, 0.965};
constexpr Box kRocBox{0.065, 0.265, 0.090, 0.370, 0.475};
constexpr Box kHistBox{0.400, 0.620, 0.090, 0.370, 0.475};
constexpr Box kProjectionBox{0.690, 0.965, 0.345, 0.860, 0.965};

void DrawLosses(Figure& f, const EpochCurves& c) {
  const std::string title = "(a) Training losses per epoch";
  std::vector<Series> losses;
  for (const Series* s : {&c.ce, &c.centre, &c.triplet, &c.total}) {
    const bool optional = s == &c.centre || s == &c.triplet;
    if (!s->x.empty() && !(optional && AllZero(*s))) losses.push_back(*s);
  }
  if (losses.empty()) {
    f.NoData(kLossBox, title, "epoch", "mean loss", "no loss values in metrics.jsonl");
    return;
  }
  if (losses.back().name == c.total.name) losses.back().style = kDashed;

  // The raw centre loss is often ten times the others: it gets its own axis on the right.
  std::vector<Series> left;
  std::optional<Series> right;
  for (const auto& s : losses) {
    if (s.name == c.centre.name) {
      right = s;
      right->name = "centre (right axis)";
    } else {
      left.push_back(s);
    }
  }
  Axes a;
  a.x = Padded(Extent(losses, false), 0.03);
  a.x_tick = EpochTick(a.x);
  auto from_zero = [](Range r) {
    Range p = Padded(r, 0.05);
    if (r.lo >= 0) p.lo = 0;
    return p;
  };
  a.y = left.empty() ? Range{0, 1} : from_zero(Extent(left, true));
  if (right) {
    a.y_right = from_zero(Extent({*right}, true));
    a.right_colour = right->colour;
  }
  f.Frame(kLossBox, a, "epoch", "mean loss", right ? "centre loss (raw)" : "");
  for (const auto& s : left) f.Draw(s);
  if (right) {
    f.UseRightAxis(a, true);
    f.Draw(*right);
    f.UseRightAxis(a, false);
  }
  std::vector<Series> legend = left;
  if (right) legend.insert(legend.begin() + std::min<std::ptrdiff_t>(1, legend.size()), *right);
  f.Legend(legend, Figure::Place::kAbove, 2, /*shift=*/0.08);  // wider than the box: off the edge
  f.Title(title, kLossBox.title_y);
}

void DrawMetrics(Figure& f, const EpochCurves& c) {
  const std::string title = "(b) Train accuracy, validation metrics";
  std::vector<Series> metrics;
  for (const Series* s : {&c.acc, &c.auc, &c.rank1}) {
    if (!s->x.empty()) metrics.push_back(*s);
  }
  if (metrics.empty()) {
    f.NoData(kMetricsBox, title, "epoch", "share", "no accuracy in metrics.jsonl");
    return;
  }
  Axes a;
  a.x = Padded(Extent(metrics, false), 0.03);
  a.x_tick = EpochTick(a.x);
  a.y = {0, 1.02};
  a.y_tick = 0.2;
  f.Frame(kMetricsBox, a, "epoch", "share");
  for (const auto& s : metrics) f.Draw(s);
  f.Legend(metrics, Figure::Place::kAbove, 2);
  f.Title(title, kMetricsBox.title_y);
}

// TAR at `log_far` on the ROC, linearly interpolated; nullopt outside the curve.
std::optional<double> TarAt(const Series& roc, double log_far) {
  for (std::size_t i = 1; i < roc.x.size(); ++i) {
    const double x0 = roc.x[i - 1], x1 = roc.x[i];
    if ((x0 <= log_far && log_far <= x1) || (x1 <= log_far && log_far <= x0)) {
      const double t = x1 == x0 ? 0 : (log_far - x0) / (x1 - x0);
      return roc.y[i - 1] + t * (roc.y[i] - roc.y[i - 1]);
    }
  }
  return std::nullopt;
}

void DrawRoc(Figure& f, const EvalPlots& e) {
  const std::string title = "(c) Test ROC";
  const std::string x_label = "false accept rate (FAR, log scale)";
  if (e.roc.x.size() < 2) {
    f.NoData(kRocBox, title, x_label, "true accept rate (TAR)", e.missing);
    return;
  }
  Axes a;
  a.x = {std::min(-3.0, std::floor(Extent({e.roc}, false).lo)), 0.0};
  a.y = {0, 1.02};
  a.y_tick = 0.2;
  a.log_x = true;
  f.Frame(kRocBox, a, x_label, "true accept rate (TAR)");

  std::vector<Series> legend;
  Series roc = e.roc;
  if (e.auc) roc.name += " (AUC " + Fixed(*e.auc, 3) + ")";
  legend.push_back(roc);
  // FAR 1e-3 and 1e-2: the test metrics when eval.json has them, else read off the curve.
  const std::pair<double, std::optional<double>> marks[] = {{-3.0, e.tar_1e3}, {-2.0, e.tar_1e2}};
  const PLINT mark_colours[] = {kRed, kGreen};
  for (int i = 0; i < 2; ++i) {
    const double lf = marks[i].first;
    const std::optional<double> tar = marks[i].second ? marks[i].second : TarAt(e.roc, lf);
    f.Width(1.5);
    f.Colour(mark_colours[i]);
    f.Join(lf, a.y.lo, lf, a.y.hi, kDashed);
    Series m{"TAR " + (tar ? Fixed(*tar, 3) : std::string("n/a")) + " at FAR 1e" +
                 std::to_string(int(lf)),
             {},
             {},
             mark_colours[i],
             1,
             false};
    if (tar) {
      m.x = {lf};
      m.y = {*tar};
    }
    legend.push_back(m);
  }
  f.Draw(roc);
  for (std::size_t i = 1; i < legend.size(); ++i) f.Draw(legend[i]);
  f.Legend(legend, Figure::Place::kAbove, 1);
  f.Title(title, kRocBox.title_y);
}

void DrawHistograms(Figure& f, const EvalPlots& e) {
  const std::string title = "(d) Test pair similarity";
  const std::size_t bins = e.hist_genuine.size();
  double sum_g = 0, sum_i = 0;
  for (std::size_t b = 0; b < bins; ++b) {
    sum_g += e.hist_genuine[b];
    sum_i += e.hist_impostor[b];
  }
  if (bins == 0 || sum_g <= 0 || sum_i <= 0) {
    f.NoData(kHistBox, title, "cosine similarity", "% of pairs per bin", e.missing);
    return;
  }

  // Each histogram as a filled step outline over -1..1; x shows only the bins in use.
  const double width = 2.0 / double(bins);
  std::size_t first = bins, last = 0;
  Series g{"genuine pairs", {}, {}, kGreen}, im{"impostor pairs", {}, {}, kRed};
  for (std::size_t b = 0; b < bins; ++b) {
    if (e.hist_genuine[b] > 0 || e.hist_impostor[b] > 0) {
      first = std::min(first, b);
      last = std::max(last, b);
    }
    const double x0 = -1.0 + width * double(b);
    for (double x : {x0, x0 + width}) {
      g.x.push_back(x);
      g.y.push_back(100 * e.hist_genuine[b] / sum_g);
      im.x.push_back(x);
      im.y.push_back(100 * e.hist_impostor[b] / sum_i);
    }
  }
  Axes a;
  a.x = {std::max(-1.0, -1.0 + width * (double(first) - 1)),
         std::min(1.0, -1.0 + width * (double(last) + 2))};
  a.y = {0, Extent({g, im}, true).hi * 1.08};
  f.Frame(kHistBox, a, "cosine similarity", "% of pairs per bin");
  for (Series* s : {&im, &g}) {
    s->x.insert(s->x.begin(), s->x.front());
    s->y.insert(s->y.begin(), 0);
    s->x.push_back(s->x.back());
    s->y.push_back(0);
    f.Fill(s->x, s->y, s == &g ? kGenuineFill : kImpostorFill);
    f.Draw(*s);
  }
  std::vector<Series> legend = {g, im};
  if (e.threshold && *e.threshold > a.x.lo && *e.threshold < a.x.hi) {
    f.Width(1.5);
    f.Colour(kInk);
    f.Join(*e.threshold, a.y.lo, *e.threshold, a.y.hi, kDashed);
    legend.push_back(
        {"threshold " + Fixed(*e.threshold, 3) + " (val FAR 1e-3)", {}, {}, kInk, kDashed, true});
  }
  f.Legend(legend, Figure::Place::kAbove, 1);
  f.Title(title, kHistBox.title_y);
}

void DrawProjection(Figure& f, const EvalPlots& e) {
  const std::string title = "(e) Validation embeddings, 2-D PCA";
  if (e.people.empty()) {
    f.NoData(kProjectionBox, title, "principal component 1", "principal component 2", e.missing);
    return;
  }

  // Same scale on both axes, so distances on the page are distances between embeddings.
  Range x = Padded(Extent(e.people, false), 0.06), y = Padded(Extent(e.people, true), 0.06);
  const double w_px = (kProjectionBox.x1 - kProjectionBox.x0) * kWidthPx;
  const double h_px = (kProjectionBox.y1 - kProjectionBox.y0) * kHeightPx;
  const double per_px = std::max((x.hi - x.lo) / w_px, (y.hi - y.lo) / h_px);
  const double cx = (x.lo + x.hi) / 2, cy = (y.lo + y.hi) / 2;
  Axes a;
  a.x = {cx - per_px * w_px / 2, cx + per_px * w_px / 2};
  a.y = {cy - per_px * h_px / 2, cy + per_px * h_px / 2};
  f.Frame(kProjectionBox, a, "principal component 1", "principal component 2");
  std::vector<Series> legend;
  for (const auto& s : e.people) {
    f.Draw(s);
    legend.push_back(s);
    legend.back().name += " (" + std::to_string(s.x.size()) + ")";
  }
  f.Legend(legend, Figure::Place::kBelow, 2, /*shift=*/-0.05);  // long names: clear the edge
  f.Title(title, kProjectionBox.title_y);
}

Status WritePng(const cv::Mat& rgb, const std::string& output_png) {
  std::vector<unsigned char> bytes;
  try {
    cv::Mat bgr;
    cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
    if (!cv::imencode(".png", bgr, bytes)) return absl::InternalError("cannot encode the PNG");
  } catch (const cv::Exception& e) {
    return absl::InternalError(std::string("cannot encode the PNG: ") + e.what());
  }
  std::ofstream out(output_png, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  out.close();
  if (!out) return absl::InternalError("cannot write " + output_png);
  return absl::OkStatus();
}

}  // namespace

Status WriteReport(const std::string& run_dir, const std::string& output_png) {
  FACEID_ASSIGN_OR_RETURN(const EpochCurves curves, ReadMetrics(run_dir + "/metrics.jsonl"));
  const EvalPlots eval = ReadEval(run_dir + "/eval.json");

  cv::Mat rgb(kHeightPx, kWidthPx, CV_8UC3, cv::Scalar(255, 255, 255));
  {
    std::lock_guard<std::mutex> lock(plplot_mutex);
    plsexit(ThrowOnPlplotExit);
    try {
      FACEID_RETURN_IF_ERROR(CheckDevice());
      Figure f(rgb);
      DrawLosses(f, curves);
      DrawMetrics(f, curves);
      DrawRoc(f, eval);
      DrawHistograms(f, eval);
      DrawProjection(f, eval);
      if (const std::string error = f.Error(); !error.empty()) {
        return absl::InternalError("PLplot could not draw " + output_png + ": " + error);
      }
    } catch (const PlplotFatal& e) {
      // Not handled: PLplot's state after a fatal error is not reset, so a later call in the
      // same process may fail too (each faceid-train report is its own process).
      return absl::InternalError("PLplot failed while drawing " + output_png + ": " + e.what() +
                                 " (is plplot-driver-cairo installed? scripts/install-deps.sh)");
    }
  }
  return WritePng(rgb, output_png);
}

}  // namespace faceid
