import ArgumentParser
import Foundation
import ResNeXt
import ResNeXtReport
import ResNeXtTrain

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Curves and a table over run folders, as papers show them: curves.svg, report.html, summary.md, summary.json.",
        discussion: """
            Reads each folder's config.json and metrics.jsonl (runs still going included). Runs whose settings differ \
            only in the seed (and in where and how they were run: outdir, threads, checkpoints, ...) are one \
            configuration: one colour in the curves, one row in the table, with the final test error's mean ± std \
            over seeds, and the published figure for that model where there is one. Prints the table.
            """)

    @Argument(help: "Run folders (train's --outdir).")
    var runs: [String]
    @Option(help: "Folder for the report's files (made if missing).")
    var out = "report"
    @Flag(help: "Print summary.json instead of the table.")
    var json = false

    func validate() throws {
        guard !runs.isEmpty else { throw ValidationError("give at least one run folder (train's --outdir)") }
    }

    func run() throws {
        do {
            let report = try ReportFiles(folders: runs)
            let paths = try report.write(into: out)
            if json {
                print(try report.summary.json())
            } else {
                print(report.summary.markdown, terminator: "")
                print("wrote \(paths.joined(separator: ", "))")
            }
        } catch let error as ResNeXtError {
            FileHandleOutput.standardError.write("error: \(error)\n")
            throw ExitCode(1)
        }
    }
}
