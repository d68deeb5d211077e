#pragma once
// How a token and its phase read in tooltips and captions, the same in every view.
#include <QString>
#include <algorithm>
#include <string>

#include "engine/hooks/step_observer.h"

namespace moe::views {

// "thinking", "answer" … (a byte outside moe::Phase reads as the last phase, "other").
inline QString phaseLabel(int phase) {
  return QString::fromLatin1(phase_name(Phase(std::clamp(phase, 0, kPhaseCount - 1))));
}

// Token text as one visible line: a newline or tab would break a tooltip's layout, so they show as
// ⏎ and ⇥.
inline QString visibleToken(const std::string& text) {
  QString s = QString::fromUtf8(text.data(), qsizetype(text.size()));
  s.replace(QLatin1Char('\n'), QStringLiteral("⏎"));
  s.replace(QLatin1Char('\t'), QStringLiteral("⇥"));
  return s;
}

}  // namespace moe::views
