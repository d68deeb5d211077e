#include "views/plot_style.h"

#include <qcustomplot.h>

namespace moe::views {

QColor expertColor(int expert) {
  if (expert < 0) return QColor(128, 128, 128);
  const double hue = std::fmod(expert * 137.508, 360.0);
  const double light = (expert / 2) % 2 == 0 ? 0.55 : 0.42;
  return QColor::fromHslF(float(hue / 360.0), 0.70f, float(light));
}

QColor phaseColor(int phase) {
  switch (phase) {
    case 0: return QColor(0x8e, 0x8e, 0x8e);  // system
    case 1: return QColor(0x3b, 0x82, 0xc4);  // user
    case 2: return QColor(0xd0, 0x8c, 0x1e);  // thinking
    case 3: return QColor(0x2e, 0x9e, 0x5a);  // answer
    default: return QColor(0x9a, 0x6f, 0xb0);  // other
  }
}

QCPColorGradient sequentialGradient(std::initializer_list<std::pair<double, QColor>> stops) {
  QCPColorGradient gradient;
  gradient.clearColorStops();
  for (const auto& [position, colour] : stops) gradient.setColorStopAt(position, colour);
  gradient.setLevelCount(256);
  gradient.setNanHandling(QCPColorGradient::nhTransparent);
  return gradient;
}

bool isDark(const QPalette& palette) { return palette.color(QPalette::Window).lightnessF() < 0.5; }

void applyPlotTheme(QCustomPlot* plot, const QPalette& palette) {
  const QColor text = palette.color(QPalette::WindowText);
  const QColor base = palette.color(QPalette::Base);
  QColor grid = text;
  grid.setAlphaF(0.18f);
  plot->setBackground(base);
  for (QCPAxisRect* rect : plot->axisRects()) {
    rect->setBackground(base);
    for (QCPAxis* axis : rect->axes()) {
      axis->setBasePen(QPen(text));
      axis->setTickPen(QPen(text));
      axis->setSubTickPen(QPen(text));
      axis->setTickLabelColor(text);
      axis->setLabelColor(text);
      axis->grid()->setPen(QPen(grid, 1, Qt::DotLine));
    }
  }
  if (plot->legend) {
    plot->legend->setBrush(base);
    plot->legend->setTextColor(text);
    plot->legend->setBorderPen(QPen(grid));
  }
}

}  // namespace moe::views
