#pragma once
// Colours every view shares, so an expert has the same colour in the chat, the routing map and the
// load chart, and plots follow the light or dark palette of the window.
#include <QColor>
#include <QPalette>

class QCustomPlot;

namespace moe::views {

// A distinct colour per expert id (golden-angle hues, alternating lightness), stable across views.
QColor expertColor(int expert);
// The colour of a phase (moe::Phase as int): system, user, thinking, answer, other.
QColor phaseColor(int phase);
// Axes, grid, text and background of `plot` from the palette (call again when the palette changes).
void applyPlotTheme(QCustomPlot* plot, const QPalette& palette);
// Whether the palette is dark (window colour lightness below one half).
bool isDark(const QPalette& palette);

}  // namespace moe::views
