import Foundation
import ResNeXtTrain

/// curves.svg: train and test loss, train and test error (%) and the learning rate against epoch,
/// one line per run; runs of one configuration share a colour and differ in their markers; test
/// solid, train dashed. Drawn as plain SVG 1.1 (lines, text, no scripts or fonts to fetch), so any
/// renderer shows it and the file diffs as text.
public struct CurvesChart {
    public static let width = 1280, height = 860
    /// Colours of configurations in order (matplotlib's tab10, readable in print and by most
    /// colour-blind readers), then again.
    public static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

    let groups: [(label: String, runs: [RunRecord])]

    public init(summary: Summary, runs: [RunRecord]) {
        let byFolder = Dictionary(runs.map { ($0.folder, $0) }, uniquingKeysWith: { a, _ in a })
        groups = summary.configurations.map { c in (c.label, c.folders.map { byFolder[$0]! }) }
    }

    struct Frame {
        let x, y, width, height: Double
        let xMax: Double
        let yMin, yMax: Double
        var left: Double { x + 74 }
        var right: Double { x + width - 24 }
        var top: Double { y + 40 }
        var bottom: Double { y + height - 52 }

        func px(_ epoch: Double) -> Double { left + (right - left) * epoch / xMax }
        func py(_ v: Double) -> Double {
            bottom - (bottom - top) * (v - yMin) / (yMax - yMin)
        }
    }

    enum Quantity {
        case loss, error, learningRate
        var title: String {
            switch self {
            case .loss: return "Cross-entropy loss"
            case .error: return "Error"
            case .learningRate: return "Learning rate"
            }
        }
        var axis: String {
            switch self {
            case .loss: return "loss (nats per image)"
            case .error: return "error (%)"
            case .learningRate: return "learning rate"
            }
        }
        /// (test or nil, train) of a row.
        func values(_ row: EpochMetrics) -> (test: Double?, train: Double) {
            switch self {
            case .loss: return (row.testLoss, row.trainLoss)
            case .error: return (100 * (1 - row.testAccuracy), 100 * (1 - row.trainAccuracy))
            case .learningRate: return (nil, row.lr)
            }
        }
    }

    public var svg: String {
        var out: [String] = [
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Self.width)\" height=\"\(Self.height)\" viewBox=\"0 0 \(Self.width) \(Self.height)\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"13\">",
            "<rect x=\"0\" y=\"0\" width=\"\(Self.width)\" height=\"\(Self.height)\" fill=\"#ffffff\"/>",
        ]
        let runs = groups.flatMap(\.runs)
        let xMax = max(1, runs.map { max(Double($0.epochsPlanned), $0.epochsDone) }.max() ?? 1)
        let (w, h) = (Double(Self.width) / 2, Double(Self.height) / 2)
        out += panel(.loss, Frame(x: 0, y: 0, width: w, height: h, xMax: xMax, yMin: 0, yMax: top(runs, .loss)))
        out += panel(.error, Frame(x: w, y: 0, width: w, height: h, xMax: xMax, yMin: 0, yMax: min(100, top(runs, .error))))
        out += panel(.learningRate, Frame(x: 0, y: h, width: w, height: h, xMax: xMax, yMin: 0, yMax: top(runs, .learningRate)))
        out += legend(x: w + 24, y: h + 20, width: w - 48, height: h - 40)
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    /// A round upper end for the axis: the largest value, plus 5 %, up to the next tick.
    func top(_ runs: [RunRecord], _ q: Quantity) -> Double {
        let values = runs.flatMap {
            $0.rows.flatMap { row -> [Double] in
                let v = q.values(row); return [v.train] + (v.test.map { [$0] } ?? [])
            }
        }
        let largest = (values.filter(\.isFinite).max() ?? 1) * 1.05
        let step = Self.tickStep(largest)
        return max(step, (largest / step).rounded(.up) * step)
    }

    /// 1, 2 or 5 times a power of ten, giving about five intervals over 0...range.
    static func tickStep(_ range: Double) -> Double {
        guard range > 0, range.isFinite else { return 1 }
        let raw = range / 5, power = pow(10, floor(log10(raw)))
        let m = raw / power
        return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * power
    }

    /// Tick values from `low` to `high` (inclusive) at `tickStep`'s round interval.
    static func ticks(from low: Double, to high: Double) -> [Double] {
        let step = tickStep(high - low)
        return Array(stride(from: low, through: high + step * 1e-9, by: step))
    }

    static func number(_ v: Double) -> String {
        if v == 0 { return "0" }
        if abs(v) >= 1, v == v.rounded() { return String(Int(v)) }
        var s = String(format: "%.4g", v)
        if s.contains("e") { s = String(format: "%g", v) }
        return s
    }

    func panel(_ q: Quantity, _ f: Frame) -> [String] {
        var out: [String] = []
        out.append("<text x=\"\(f.left)\" y=\"\(f.y + 24)\" font-size=\"16\" font-weight=\"bold\">\(q.title)</text>")
        // grid and ticks
        for t in Self.ticks(from: 0, to: f.xMax) {
            let x = f.px(t)
            out.append(line(x, f.top, x, f.bottom, stroke: "#e6e6e6"))
            out.append("<text x=\"\(x)\" y=\"\(f.bottom + 18)\" text-anchor=\"middle\" fill=\"#333333\">\(Self.number(t))</text>")
        }
        for v in Self.ticks(from: f.yMin, to: f.yMax) {
            let y = f.py(v)
            out.append(line(f.left, y, f.right, y, stroke: "#e6e6e6"))
            out.append("<text x=\"\(f.left - 8)\" y=\"\(y + 4)\" text-anchor=\"end\" fill=\"#333333\">\(Self.number(v))</text>")
        }
        out.append(
            "<rect x=\"\(f.left)\" y=\"\(f.top)\" width=\"\(f.right - f.left)\" height=\"\(f.bottom - f.top)\" fill=\"none\" stroke=\"#444444\"/>")
        out.append("<text x=\"\((f.left + f.right) / 2)\" y=\"\(f.bottom + 40)\" text-anchor=\"middle\">epoch</text>")
        let cy = (f.top + f.bottom) / 2, cx = f.x + 18
        out.append("<text x=\"\(cx)\" y=\"\(cy)\" text-anchor=\"middle\" transform=\"rotate(-90 \(cx) \(cy))\">\(q.axis)</text>")
        // the runs: train dashed, test solid with the seed's marker
        for (g, group) in groups.enumerated() {
            let colour = Self.palette[g % Self.palette.count]
            for (r, run) in group.runs.enumerated() where !run.rows.isEmpty {
                let rows = run.rows.filter { q.values($0).train.isFinite }
                let train = rows.map { (f.px(run.epochs(at: $0)), f.py(q.values($0).train)) }
                out.append(polyline(train, colour: colour, dashed: q != .learningRate))
                let test = run.rows.compactMap { row in q.values(row).test.flatMap { $0.isFinite ? (f.px(run.epochs(at: row)), f.py($0)) : nil } }
                if !test.isEmpty { out.append(polyline(test, colour: colour, dashed: false)) }
                let marked = test.isEmpty ? train : test
                let every = max(1, marked.count / 12)
                for (i, p) in marked.enumerated() where i % every == 0 || i == marked.count - 1 {
                    out.append(Self.marker(r, x: p.0, y: p.1, colour: colour))
                }
            }
        }
        return out
    }

    func legend(x: Double, y: Double, width: Double, height: Double) -> [String] {
        var out = ["<text x=\"\(x)\" y=\"\(y + 14)\" font-size=\"16\" font-weight=\"bold\">Runs</text>"]
        var row = y + 40
        out.append(line(x, row - 4, x + 34, row - 4, stroke: "#444444", width: 2))
        out.append("<text x=\"\(x + 42)\" y=\"\(row)\">test</text>")
        out.append(
            "<line x1=\"\(x + 100)\" y1=\"\(row - 4)\" x2=\"\(x + 134)\" y2=\"\(row - 4)\" stroke=\"#444444\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/>"
        )
        out.append("<text x=\"\(x + 142)\" y=\"\(row)\">train</text>")
        row += 28
        for (g, group) in groups.enumerated() where row < y + height {
            let colour = Self.palette[g % Self.palette.count]
            out.append(line(x, row - 4, x + 34, row - 4, stroke: colour, width: 3))
            out.append("<text x=\"\(x + 42)\" y=\"\(row)\" font-weight=\"bold\">\(Self.escape(group.label))</text>")
            row += 22
            for (r, run) in group.runs.enumerated() where row < y + height {
                out.append(Self.marker(r, x: x + 17, y: row - 4, colour: colour))
                var text = "seed \(run.seed): \(Summary.epochs(run.epochsDone))/\(run.epochsPlanned) epochs"
                if let last = run.rows.last { text += String(format: ", test error %.2f %%", 100 * (1 - last.testAccuracy)) }
                out.append("<text x=\"\(x + 42)\" y=\"\(row)\">\(Self.escape(text)) — \(Self.escape(run.folder))</text>")
                row += 20
            }
            row += 8
        }
        return out
    }

    static func marker(_ index: Int, x: Double, y: Double, colour: String) -> String {
        let s = 4.5
        switch index % 5 {
        case 0: return "<circle cx=\"\(x)\" cy=\"\(y)\" r=\"\(s)\" fill=\"\(colour)\"/>"
        case 1: return "<rect x=\"\(x - s)\" y=\"\(y - s)\" width=\"\(2 * s)\" height=\"\(2 * s)\" fill=\"\(colour)\"/>"
        case 2: return "<polygon points=\"\(x),\(y - s * 1.2) \(x + s * 1.1),\(y + s * 0.9) \(x - s * 1.1),\(y + s * 0.9)\" fill=\"\(colour)\"/>"
        case 3: return "<polygon points=\"\(x),\(y - s * 1.3) \(x + s),\(y) \(x),\(y + s * 1.3) \(x - s),\(y)\" fill=\"\(colour)\"/>"
        default:
            return "<circle cx=\"\(x)\" cy=\"\(y)\" r=\"\(s)\" fill=\"#ffffff\" stroke=\"\(colour)\" stroke-width=\"2\"/>"
        }
    }

    func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String, width: Double = 1) -> String {
        "<line x1=\"\(x1)\" y1=\"\(y1)\" x2=\"\(x2)\" y2=\"\(y2)\" stroke=\"\(stroke)\" stroke-width=\"\(width)\"/>"
    }

    func polyline(_ points: [(Double, Double)], colour: String, dashed: Bool) -> String {
        let p = points.map { String(format: "%.1f,%.1f", $0.0, $0.1) }.joined(separator: " ")
        return
            "<polyline points=\"\(p)\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"\(dashed ? " stroke-dasharray=\"6 4\"" : "") stroke-linejoin=\"round\"/>"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
