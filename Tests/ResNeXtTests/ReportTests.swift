import CZlib
import Foundation
import ResNeXtReport
import Testing

/// A PNG decoded to RGBA rows (8-bit RGB or RGBA, not interlaced: what rsvg-convert writes).
struct DecodedPNG {
    let width: Int, height: Int
    /// width x height pixels, 4 bytes each.
    let rgba: [UInt8]

    init(_ bytes: [UInt8]) throws {
        struct Bad: Error, CustomStringConvertible { let description: String }
        guard bytes.count > 8, bytes.prefix(8).elementsEqual([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) else {
            throw Bad(description: "not a PNG")
        }
        func u32(_ at: Int) -> Int { Int(bytes[at]) << 24 | Int(bytes[at + 1]) << 16 | Int(bytes[at + 2]) << 8 | Int(bytes[at + 3]) }
        var at = 8, (w, h, channels) = (0, 0, 0)
        var compressed: [UInt8] = []
        while at + 8 <= bytes.count {
            let length = u32(at), type = String(decoding: bytes[(at + 4)..<(at + 8)], as: UTF8.self)
            let data = Array(bytes[(at + 8)..<(at + 8 + length)])
            if type == "IHDR" {
                (w, h) = (u32(at + 8), u32(at + 12))
                guard data[8] == 8, data[12] == 0, data[9] == 6 || data[9] == 2 else { throw Bad(description: "IHDR \(data): not 8-bit RGB(A)") }
                channels = data[9] == 6 ? 4 : 3
            }
            if type == "IDAT" { compressed += data }
            at += 12 + length
        }
        let stride = w * channels
        var raw = [UInt8](repeating: 0, count: h * (stride + 1))
        var size = uLongf(raw.count)
        let rc = uncompress(&raw, &size, compressed, uLong(compressed.count))
        guard rc == Z_OK, Int(size) == raw.count else { throw Bad(description: "zlib: \(rc), \(size) of \(raw.count) bytes") }
        // undo each row's filter (None, Sub, Up, Average, Paeth)
        var pixels = [UInt8](repeating: 0, count: h * stride)
        for y in 0..<h {
            let filter = raw[y * (stride + 1)]
            for x in 0..<stride {
                let value = Int(raw[y * (stride + 1) + 1 + x])
                let a = x >= channels ? Int(pixels[y * stride + x - channels]) : 0
                let b = y > 0 ? Int(pixels[(y - 1) * stride + x]) : 0
                let c = x >= channels && y > 0 ? Int(pixels[(y - 1) * stride + x - channels]) : 0
                let predicted: Int
                switch filter {
                case 0: predicted = 0
                case 1: predicted = a
                case 2: predicted = b
                case 3: predicted = (a + b) / 2
                case 4:
                    let p = a + b - c
                    let (pa, pb, pc) = (abs(p - a), abs(p - b), abs(p - c))
                    predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c
                default: throw Bad(description: "row \(y): filter \(filter)")
                }
                pixels[y * stride + x] = UInt8((value + predicted) & 0xFF)
            }
        }
        width = w
        height = h
        if channels == 4 {
            rgba = pixels
        } else {
            var out = [UInt8](repeating: 255, count: w * h * 4)
            for i in 0..<(w * h) { for k in 0..<3 { out[4 * i + k] = pixels[3 * i + k] } }
            rgba = out
        }
    }

    /// Pixels of exactly this colour ("#rrggbb"), opaque.
    func count(_ hex: String) -> Int {
        let v = Int(hex.dropFirst(), radix: 16)!
        let (r, g, b) = (UInt8(v >> 16), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF))
        var n = 0
        for i in Swift.stride(from: 0, to: rgba.count, by: 4) where rgba[i] == r && rgba[i + 1] == g && rgba[i + 2] == b && rgba[i + 3] == 255 {
            n += 1
        }
        return n
    }
}

/// `resnext-ddp report` over real (tiny) runs: the table's figures recomputed from the runs'
/// metrics.jsonl, the configurations told apart, the curves rendered by a real SVG renderer, and
/// one-line errors for what is not a run.
@Suite(.serialized) struct ReportTests {
    static let tiny = ["--depth", "11", "--cardinality", "2", "--base-channels", "2", "--batch-size", "16", "--bn-group", "8"]

    /// Two seeds of one configuration (3 epochs), one run of another (bf16 gradients), one still
    /// going (planned 5 epochs, stopped after 2 by --max-steps).
    static func runs() throws -> [String] {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 48)], test: 16)
        var folders: [String] = []
        for extra in [
            ["--seed", "1"], ["--seed", "2"], ["--seed", "1", "--grad-dtype", "bf16"], ["--seed", "3", "--epochs", "5", "--max-steps", "6"],
        ] {
            let out = try temporaryDirectory()
            let r = try CLI.run(["train"] + tiny + ["--epochs", "3", "--data-dir", data, "--outdir", out] + extra)
            #expect(r.status == 0, "\(extra): \(r.output)")
            folders.append(out)
        }
        return folders
    }

    /// metrics.jsonl's rows as plain JSON objects, read here without the trainer's types.
    static func metricsRows(_ folder: String) throws -> [[String: Any]] {
        try String(contentsOfFile: folder + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    static func testError(_ row: [String: Any]) -> Double { 100 * (1 - (row["test_accuracy"] as! Double)) }

    static func finalError(_ folder: String) throws -> (error: Double, epochs: Int) {
        let last = try metricsRows(folder).last!
        return (testError(last), last["epoch"] as! Int)
    }

    @Test func tableAndCurvesOverSeedsAndConfigurations() throws {
        let folders = try Self.runs()
        let out = try temporaryDirectory() + "/report"
        let r = try CLI.run(["report"] + folders + ["--out", out, "--json"])
        #expect(r.status == 0, "\(r.output)")
        let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        let configs = summary["configurations"] as! [[String: Any]]
        #expect(configs.count == 3, "\(configs.map { $0["label"]! })")
        // the two seeds: mean and sample standard deviation of their final test errors
        let (e1, n1) = try Self.finalError(folders[0]), (e2, _) = try Self.finalError(folders[1])
        let first = configs[0]
        #expect(first["runs"] as? Int == 2 && first["seeds"] as? [Int] == [1, 2] && n1 == 3)
        #expect(abs((first["final_test_error_mean"] as! Double) - (e1 + e2) / 2) < 1e-9)
        #expect(abs((first["final_test_error_std"] as! Double) - abs(e1 - e2) / 2.0.squareRoot()) < 1e-9)
        #expect(first["epochs_done"] as? [Int] == [3, 3] && first["epochs_planned"] as? Int == 3)
        // labels tell the configurations apart by what differs: gradients, planned epochs
        let labels = configs.map { $0["label"] as! String }
        #expect(labels[0].contains("11-2x2d") && labels[0].contains("grad-dtype fp32"), "\(labels)")
        #expect(labels[1].contains("grad-dtype bf16") && labels[2].contains("5 ep"), "\(labels)")
        #expect(configs[1]["final_test_error_std"] == nil || configs[1]["final_test_error_std"] is NSNull)
        #expect(configs[2]["epochs_done"] as? [Int] == [2] && configs[2]["epochs_planned"] as? Int == 5)
        #expect(first["published"] == nil || first["published"] is NSNull)

        let markdown = try String(contentsOfFile: out + "/summary.md", encoding: .utf8)
        let rows = markdown.split(separator: "\n").filter { $0.hasPrefix("| ") }
        #expect(rows.count == 4, "\(markdown)")
        #expect(rows[1].contains(String(format: "%.2f ± %.2f", (e1 + e2) / 2, abs(e1 - e2) / 2.0.squareRoot())), "\(rows[1])")
        #expect(rows[3].contains("2 / 5 (not finished)"), "\(rows[3])")
        let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        #expect(html.contains("<svg") && html.contains("<table>") && html.contains("grad-dtype bf16"))

        // rendered by librsvg: the declared size, not blank, each configuration's colour drawn
        let svg = try String(contentsOfFile: out + "/curves.svg", encoding: .utf8)
        for label in ["epoch", "error (%)", "loss (nats per image)", "learning rate", "seed 2: 3/3 epochs"] {
            #expect(svg.contains(label), "curves.svg lacks \(label)")
        }
        let png = out + "/curves.png"
        let render = try CLI.run(["rsvg-convert", "-o", png, out + "/curves.svg"], executable: "/usr/bin/env")
        #expect(render.status == 0, "rsvg-convert (Debian's librsvg2-bin, which scripts/test installs): \(render.output)")
        let image = try DecodedPNG(Array(try Data(contentsOf: URL(fileURLWithPath: png))))
        #expect(image.width == CurvesChart.width && image.height == CurvesChart.height)
        let white = image.count("#ffffff"), total = image.width * image.height
        #expect(white < total * 95 / 100 && white > total / 2, "\(total - white) of \(total) pixels are not white")
        for colour in CurvesChart.palette.prefix(3) {
            #expect(image.count(colour) > 200, "\(colour): \(image.count(colour)) pixels")
        }
        #expect(image.count(CurvesChart.palette[3]) == 0)
    }

    /// While a seed is still going, its configuration's runs are compared at the last epoch all
    /// of them reached, not each at its own last epoch.
    @Test func runsStillGoingAreComparedAtACommonEpoch() throws {
        let folders = try Self.runs()
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 48)], test: 16)
        let going = try temporaryDirectory()
        let t = try CLI.run(["train"] + Self.tiny + ["--epochs", "3", "--seed", "4", "--max-steps", "6", "--data-dir", data, "--outdir", going])
        #expect(t.status == 0, "\(t.output)")
        let r = try CLI.run(["report", folders[0], folders[1], going, "--out", try temporaryDirectory(), "--json"])
        #expect(r.status == 0, "\(r.output)")
        let config = ((try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any])["configurations"] as! [[String: Any]])[0]
        #expect(config["compared_at_epoch"] as? Int == 2 && config["epochs_done"] as? [Double] == [3, 3, 2], "\(config)")
        let atTwo = try [folders[0], folders[1], going].map { Self.testError(try Self.metricsRows($0)[1]) }
        let errors = config["final_test_errors"] as! [Double]
        #expect(zip(errors, atTwo).allSatisfy { abs($0 - $1) < 1e-9 }, "\(errors) against \(atTwo)")
    }

    /// A model with a published figure gets it beside its row, marked with its source.
    @Test func publishedFigureBesideItsModel() throws {
        let folders = try Self.runs()
        let config = folders[0] + "/config.json"
        let text = try String(contentsOfFile: config, encoding: .utf8)
            .replacingOccurrences(of: "\"base_channels\" : 2", with: "\"base_channels\" : 64")
            .replacingOccurrences(of: "\"cardinality\" : 2", with: "\"cardinality\" : 8")
            .replacingOccurrences(of: "\"depth\" : 11", with: "\"depth\" : 29")
        try text.write(toFile: config, atomically: false, encoding: .utf8)
        let r = try CLI.run(["report", folders[0], "--out", try temporaryDirectory()])
        #expect(r.status == 0 && r.stdout.contains("29-8x64d") && r.stdout.contains("3.65, paper (Xie et al. 2017"), "\(r.output)")
    }

    @Test func whatIsNotARunIsNamed() throws {
        let empty = try temporaryDirectory()
        var r = try CLI.run(["report", empty, "--out", try temporaryDirectory()])
        #expect(
            r.status == 1 && r.stderr == "error: \(empty): not a run folder (no config.json): pass run folders, the --outdir of resnext-ddp train\n",
            "\(r.output)")
        r = try CLI.run(["report", empty + "/missing"])
        #expect(r.status == 1 && r.stderr.contains("\(empty)/missing: no such folder"), "\(r.output)")
        let run = try Self.runs()[0]
        var lines = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map(String.init)
        lines[1] = String(lines[1].prefix(30))
        try (lines.joined(separator: "\n") + "\n").write(toFile: run + "/metrics.jsonl", atomically: false, encoding: .utf8)
        r = try CLI.run(["report", run, "--out", try temporaryDirectory()])
        #expect(r.status == 1 && r.stderr.contains("\(run)/metrics.jsonl line 2: not a metrics row (not JSON)"), "\(r.output)")
        #expect(r.stderr.split(separator: "\n").count == 1)
    }

    /// launch/reproduce.sh rehearsed: two of its runs through their first steps (a tiny model,
    /// --max-steps, 2 processes), then the same command again with more steps resumes each from
    /// its checkpoint; the report covers both seeds. Its mistakes are refused in one line.
    @Test func reproduceScriptRunsResumesAndReports() throws {
        let data = try SyntheticCIFAR.folder(train: [("data_batch_1.bin", 64)], test: 16)
        let runs = try temporaryDirectory()
        let script = LayoutTests.root.appendingPathComponent("launch/reproduce.sh").path
        func rehearse(_ steps: Int) throws -> CLI.Result {
            try CLI.run(
                [
                    script, "-np", "2", "--runs", runs, "--only", "29-4x64d-seed1,29-4x64d-seed2", "--", "--depth", "11", "--cardinality", "2",
                    "--base-channels", "2", "--batch-size", "16", "--bn-group", "8", "--max-steps", "\(steps)", "--data-dir", data,
                ], executable: "/bin/bash", environment: ["RESNEXT_DDP": CLI.executable])
        }
        var r = try rehearse(2)
        #expect(r.status == 0 && !r.output.contains("resuming"), "\(r.output)")
        r = try rehearse(6)
        #expect(r.status == 0, "\(r.output)")
        for seed in [1, 2] {
            let folder = "\(runs)/29-4x64d-seed\(seed)"
            #expect(r.stdout.contains("resuming from \(folder)/checkpoint-00000002.safetensors at step 2"), "\(r.output)")
            let rows = try Self.metricsRows(folder)
            #expect(rows.count == 2 && rows.last!["step"] as? Int == 6, "\(rows)")
        }
        let summary = try String(contentsOfFile: runs + "/report/summary.json", encoding: .utf8)
        let configs = (try JSONSerialization.jsonObject(with: Data(summary.utf8)) as! [String: Any])["configurations"] as! [[String: Any]]
        #expect(configs.count == 1 && configs[0]["seeds"] as? [Int] == [1, 2] && configs[0]["epochs_done"] as? [Double] == [1.5, 1.5], "\(summary)")
        r = try CLI.run([script, "--only", "29-2x8d-seed1"], executable: "/bin/bash")
        #expect(r.status == 2 && r.stderr.hasPrefix("launch/reproduce.sh: --only 29-2x8d-seed1: not a run here"), "\(r.output)")
    }
}
