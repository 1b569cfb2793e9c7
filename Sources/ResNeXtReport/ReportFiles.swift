import Foundation
import ResNeXt

/// What `resnext-ddp report` writes into its folder: curves.svg, report.html (the curves and the
/// table in one self-contained page), summary.md and summary.json. Each file is written whole
/// (temporary file, then rename), so a report read while it is rewritten is never half a file.
public struct ReportFiles {
    public let runs: [RunRecord]
    public let summary: Summary
    public let chart: CurvesChart

    /// Reads every run folder; the first that is not a run, or whose metrics do not parse, is an
    /// error naming it.
    public init(folders: [String]) throws {
        runs = try folders.map { try RunRecord(folder: $0) }
        summary = Summary(runs: runs)
        chart = CurvesChart(summary: summary, runs: runs)
    }

    public var html: String {
        let (header, rows) = summary.table
        var table = ["<table>", "<tr>" + header.map { "<th>\(CurvesChart.escape($0))</th>" }.joined() + "</tr>"]
        for row in rows { table.append("<tr>" + row.map { "<td>\(CurvesChart.escape($0))</td>" }.joined() + "</tr>") }
        table.append("</table>")
        let svg = chart.svg.split(separator: "\n", maxSplits: 1).dropFirst().joined()  // without the XML declaration
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <title>resnext-ddp report</title>
            <style>
            body { font-family: DejaVu Sans, Helvetica, Arial, sans-serif; margin: 24px; }
            table { border-collapse: collapse; margin-top: 16px; }
            th, td { border: 1px solid #cccccc; padding: 4px 8px; text-align: left; }
            th { background: #f3f3f3; }
            </style>
            </head>
            <body>
            <h1>resnext-ddp: \(runs.count) run(s), \(summary.configurations.count) configuration(s)</h1>
            \(svg)
            \(table.joined(separator: "\n"))
            <p>\(CurvesChart.escape(Summary.legend))</p>
            </body>
            </html>

            """
    }

    /// Writes the four files into `folder` (made if missing) and returns their paths.
    @discardableResult
    public func write(into folder: String) throws -> [String] {
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw ResNeXtError("--out \(folder): cannot create the folder (\(error.localizedDescription)): choose a writable place")
        }
        let files = [
            ("curves.svg", chart.svg), ("report.html", html), ("summary.md", summary.markdown), ("summary.json", try summary.json() + "\n"),
        ]
        var paths: [String] = []
        for (name, text) in files {
            let path = folder + "/" + name
            try writeAtomically(Array(text.utf8), to: path)
            paths.append(path)
        }
        return paths
    }
}
