-- Poll answers fit their poll, whoever writes them: a rating 1-5, a score 0-10, distinct option numbers
-- of the poll (one only unless it allows several), a ranking of distinct items (all of them once complete).
-- A member re-ranking builds the new order in `draft` while the finished ranking still counts.
-- (PostgreSQL: the same rules as storage/migrations/0014_polls.sql, in PL/pgSQL over jsonb; the JSON stays TEXT.)

ALTER TABLE poll_answers ADD COLUMN draft TEXT;   -- rank: JSON list of the new order so far; NULL: none

-- The JSON value of a text, or NULL when it is not valid JSON (SQLite's json_valid).
CREATE FUNCTION vipbot_json(t TEXT) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN t::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

-- Whether a JSON value is an integer (SQLite's json_type(...) = 'integer': a number written without . or e).
CREATE FUNCTION vipbot_json_integer(j jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(j) = 'number' AND (j #>> '{}') ~ '^-?[0-9]+$'
$$;

-- Whether a JSON array holds distinct integers from 0 to n - 1.
CREATE FUNCTION vipbot_json_indexes(j jsonb, n BIGINT) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    e jsonb;
BEGIN
    FOR e IN SELECT value FROM jsonb_array_elements(j) LOOP
        IF NOT vipbot_json_integer(e) OR (e #>> '{}')::numeric < 0 OR (e #>> '{}')::numeric >= n THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN (SELECT count(DISTINCT value) FROM jsonb_array_elements(j)) = jsonb_array_length(j);
END $$;

CREATE FUNCTION poll_answer_fits() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p polls;
    answer jsonb := vipbot_json(NEW.answer);
    draft jsonb := vipbot_json(NEW.draft);
    n BIGINT;
    fits boolean := false;
BEGIN
    SELECT * INTO p FROM polls WHERE id = NEW.poll_id;
    IF FOUND AND answer IS NOT NULL THEN
        n := jsonb_array_length(vipbot_json(p.options));
        IF p.kind IN ('rating', 'nps') THEN
            fits := NEW.complete = 1 AND vipbot_json_integer(answer)
                    AND (answer #>> '{}')::numeric BETWEEN CASE p.kind WHEN 'rating' THEN 1 ELSE 0 END
                                                       AND CASE p.kind WHEN 'rating' THEN 5 ELSE 10 END;
        ELSIF jsonb_typeof(answer) = 'array' THEN
            IF p.kind = 'choice' THEN
                fits := NEW.complete = 1
                        AND jsonb_array_length(answer) BETWEEN 1 AND CASE WHEN p.multi <> 0 THEN n ELSE 1 END;
            ELSIF p.kind = 'rank' THEN
                fits := NEW.complete = 0 OR jsonb_array_length(answer) = n;
            END IF;
            fits := fits AND vipbot_json_indexes(answer, n);
        END IF;
        IF fits AND NEW.draft IS NOT NULL THEN
            fits := p.kind = 'rank' AND NEW.complete = 1 AND draft IS NOT NULL AND jsonb_typeof(draft) = 'array';
            IF fits THEN
                fits := jsonb_array_length(draft) < n AND vipbot_json_indexes(draft, n);
            END IF;
        END IF;
    END IF;
    IF fits IS NOT TRUE THEN
        RAISE EXCEPTION USING ERRCODE = 'integrity_constraint_violation', MESSAGE = 'poll answer does not fit its poll';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER poll_answer_fits_on_insert BEFORE INSERT ON poll_answers
    FOR EACH ROW EXECUTE FUNCTION poll_answer_fits();

CREATE TRIGGER poll_answer_fits_on_update BEFORE UPDATE ON poll_answers
    FOR EACH ROW EXECUTE FUNCTION poll_answer_fits();
