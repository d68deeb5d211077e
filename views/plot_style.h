#pragma once
// Colours every view shares, so an expert has the same colour in the chat, the routing map and the
// load chart, and plots follow the light or dark palette of the window.
#include <QColor>
#include <QPalette>
#include <initializer_list>
#include <utility>

class QCPColorGradient;

class QCustomPlot;

namespace moe::views {

// A distinct colour per expert id (golden-angle hues, alternating lightness), stable across views.
QColor expertColor(int expert);
// The colour of a phase (moe::Phase as int): system, user, thinking, answer, other.
QColor phaseColor(int phase);
// Axes, grid, text and background of `plot` from the palette (call again when the palette changes).
void applyPlotTheme(QCustomPlot* plot, const QPalette& palette);
// A smooth gradient through (position 0..1, colour) stops, 256 levels; empty cells (NaN) stay
// transparent, as every heatmap of the workbench wants.
QCPColorGradient sequentialGradient(std::initializer_list<std::pair<double, QColor>> stops);
// Whether the palette is dark (window colour lightness below one half).
bool isDark(const QPalette& palette);

}  // namespace moe::views
