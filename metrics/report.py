"""The revenue page's tables as plain text, for the terminal (`manage.py simulate` prints them)."""

from datetime import datetime

from . import summary, tables


def revenue_report(now: datetime) -> str:
    """Every table of the revenue page at `now`, aligned, with the day's headline and the check."""
    board = summary.dashboard(now)
    lines = [f"Revenue and health at {now:%Y-%m-%d %H:%M} UTC (ACC-5)"]
    lines += [f"  {label}: {cell.text}" for label, cell in tables.today_cards(board)]
    verdict = "matches" if board.check_difference == 0 else f"differs by {tables.money(board.check_difference).text}"
    lines.append(f"  Check against the subscriptions now: {tables.money(board.subscriptions_mrr).text} ({verdict})")
    for table in tables.tables(board):
        rows = [table.headers] + [[cell.text for cell in row] for row in table.rows]
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(table.headers))]
        lines += ["", table.title]
        for row in rows:
            lines.append("  " + "  ".join(str(text).rjust(width) if i else str(text).ljust(width)
                                          for i, (text, width) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)
